package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/node/backend"
)

// scrape fetches /metrics and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := client.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample finds the metric of family name with exactly the given labels; nil
// when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is the value of a counter or gauge sample, failing when it is
// missing.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(fams, name, labels)
	if m == nil {
		t.Fatalf("%s%v: missing", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s%v: neither counter nor gauge", name, labels)
	return 0
}

// histogramCount is the number of observations of a histogram sample.
func histogramCount(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	m := sample(fams, name, labels)
	if m == nil || m.Histogram == nil {
		t.Fatalf("%s%v: no histogram", name, labels)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func post(t *testing.T, url, path, body string, header ...string) (int, string) {
	t.Helper()
	return do(t, http.MethodPost, url+path, body, header...)
}

func TestMetrics(t *testing.T) {
	reply := words("Hel", "lo")
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if req.Model == "ghost" {
			return fmt.Errorf("%w: model %q not found", backend.ErrModelNotFound, req.Model)
		}
		return reply(ctx, req, fn)
	}}
	// The test stands in for a peer: every caller is one.
	url, _ := startServer(t, be, func(c *Config) {
		c.PeerID = func(*tls.ConnectionState) (string, error) { return "peer", nil }
	})

	const chat = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	if st, body := post(t, url, "/v1/chat/completions", chat); st != 200 {
		t.Fatalf("chat: %d %s", st, body)
	}
	if st, body := post(t, url, "/internal/v1/forward/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`); st != 200 {
		t.Fatalf("forwarded chat: %d %s", st, body)
	}
	st, body := post(t, url, "/v1/chat/completions", streamBody)
	if st != 200 {
		t.Fatalf("streamed chat: %d %s", st, body)
	}
	frames := len(sseEvents(t, strings.NewReader(body)))
	if frames < 3 {
		t.Fatalf("streamed chat sent %d frames: %q", frames, body)
	}
	if st, body := post(t, url, "/v1/chat/completions", `{"model":"ghost","messages":[{"role":"user","content":"hi"}]}`); st != 404 {
		t.Fatalf("unknown model: %d %s", st, body)
	}
	if st, body := post(t, url, "/v1/chat/completions", `{`); st != 400 {
		t.Fatalf("bad request: %d %s", st, body)
	}

	fams := scrape(t, url)
	counters := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sovra_requests_total", map[string]string{"route": "openai", "model": "m", "status": "200"}, 2},
		{"sovra_requests_total", map[string]string{"route": "ollama", "model": "m", "status": "200"}, 1},
		{"sovra_requests_total", map[string]string{"route": "openai", "model": "ghost", "status": "404"}, 1},
		{"sovra_requests_total", map[string]string{"route": "openai", "model": "", "status": "400"}, 1},
		{"sovra_requests_in_flight", map[string]string{"model": "m"}, 0},
		{"sovra_requests_in_flight", map[string]string{"model": "ghost"}, 0},
		// The scrape itself is in flight, its model unknown.
		{"sovra_requests_in_flight", map[string]string{"model": ""}, 1},
		{"sovra_tokens_total", map[string]string{"model": "m", "kind": "prompt"}, 9},
		{"sovra_tokens_total", map[string]string{"model": "m", "kind": "completion"}, 6},
		{"sovra_forwarded_requests_total", map[string]string{"model": "m"}, 1},
		{"sovra_stream_events_total", map[string]string{"model": "m"}, float64(frames)},
	}
	for _, c := range counters {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, absent := range []struct {
		name   string
		labels map[string]string
	}{
		{"sovra_forwarded_requests_total", map[string]string{"model": "ghost"}},
		{"sovra_tokens_total", map[string]string{"model": "ghost", "kind": "prompt"}},
		{"sovra_stream_events_total", map[string]string{"model": "ghost"}},
		{"sovra_time_to_first_token_seconds", map[string]string{"model": "ghost"}},
	} {
		if sample(fams, absent.name, absent.labels) != nil {
			t.Errorf("%s%v: recorded, want absent", absent.name, absent.labels)
		}
	}

	histograms := []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"sovra_request_duration_seconds", map[string]string{"route": "openai", "model": "m"}, 2},
		{"sovra_request_duration_seconds", map[string]string{"route": "ollama", "model": "m"}, 1},
		{"sovra_request_duration_seconds", map[string]string{"route": "openai", "model": "ghost"}, 1},
		{"sovra_request_duration_seconds", map[string]string{"route": "openai", "model": ""}, 1},
		{"sovra_time_to_first_token_seconds", map[string]string{"model": "m"}, 1},
	}
	for _, h := range histograms {
		n, sum := histogramCount(t, fams, h.name, h.labels)
		if n != h.want {
			t.Errorf("%s%v count = %d, want %d", h.name, h.labels, n, h.want)
		}
		if sum <= 0 {
			t.Errorf("%s%v sum = %v, want > 0", h.name, h.labels, sum)
		}
	}

	// The first scrape is counted once it has ended.
	fams = scrape(t, url)
	if got := value(t, fams, "sovra_requests_total", map[string]string{"route": "other", "model": "", "status": "200"}); got != 1 {
		t.Errorf("scrapes counted %v, want 1", got)
	}
}

func TestMetricsNativeStream(t *testing.T) {
	url, _ := startServer(t, &fakeBackend{chat: words("a", "b", "c")})
	st, body := post(t, url, "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if st != 200 {
		t.Fatalf("status %d: %s", st, body)
	}
	lines := strings.Count(body, "\n")
	fams := scrape(t, url)
	if got := value(t, fams, "sovra_requests_total", map[string]string{"route": "ollama", "model": "m", "status": "200"}); got != 1 {
		t.Errorf("requests = %v, want 1", got)
	}
	if got := value(t, fams, "sovra_stream_events_total", map[string]string{"model": "m"}); got != float64(lines) || lines != 4 {
		t.Errorf("stream events = %v, body has %d lines, want 4", got, lines)
	}
	if got := value(t, fams, "sovra_tokens_total", map[string]string{"model": "m", "kind": "completion"}); got != 3 {
		t.Errorf("completion tokens = %v, want 3", got)
	}
	if n, _ := histogramCount(t, fams, "sovra_time_to_first_token_seconds", map[string]string{"model": "m"}); n != 1 {
		t.Errorf("first-token observations = %d, want 1", n)
	}
}

func TestMetricsInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		close(started)
		<-release
		return words("x")(ctx, req, fn)
	}}
	url, _ := startServer(t, be)
	done := make(chan int, 1)
	go func() {
		resp, err := client.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-started
	fams := scrape(t, url)
	if got := value(t, fams, "sovra_requests_in_flight", map[string]string{"model": "m"}); got != 1 {
		t.Errorf("in flight while generating = %v, want 1", got)
	}
	close(release)
	if st := <-done; st != 200 {
		t.Fatalf("chat status %d", st)
	}
	fams = scrape(t, url)
	if got := value(t, fams, "sovra_requests_in_flight", map[string]string{"model": "m"}); got != 0 {
		t.Errorf("in flight after the request = %v, want 0", got)
	}
}

func TestModelLabelBounded(t *testing.T) {
	m := newMetrics(nil)
	if got := m.modelLabel(""); got != "" {
		t.Fatalf("empty model labelled %q", got)
	}
	for i := range maxModelLabels {
		name := fmt.Sprintf("m%d", i)
		if got := m.modelLabel(name); got != name {
			t.Fatalf("model %q labelled %q", name, got)
		}
	}
	if got := m.modelLabel("one-too-many"); got != otherModel {
		t.Fatalf("model past the bound labelled %q, want %q", got, otherModel)
	}
	if got := m.modelLabel("m0"); got != "m0" {
		t.Fatalf("known model labelled %q after the bound", got)
	}
}

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/chat/completions":      routeOpenAI,
		"/v1/messages":              routeAnthropic,
		"/api/chat":                 routeOllama,
		"/admin/v1/nodes":           routeAdmin,
		"/internal/v1/cluster/join": routeInternal,
		"/metrics":                  routeOther,
		"/healthz":                  routeOther,
	} {
		if got := routeOf(path); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// labelling is a backend that knows one model, as the router does.
type labelling struct {
	*fakeBackend
	known string
}

func (l labelling) Label(model string) string {
	if model == l.known {
		return model
	}
	return otherModel
}

func TestJunkModelNamesShareOneLabel(t *testing.T) {
	be := labelling{fakeBackend: &fakeBackend{chat: words("ok")}, known: "real"}
	s := New(testConfig(), be, nil, zaptest.NewLogger(t))
	url := serve(t, s)
	for i := range 1000 {
		post(t, url, "/api/chat", fmt.Sprintf(`{"model":"junk-%d","stream":false,"messages":[]}`, i))
	}
	post(t, url, "/api/chat", `{"model":"real","stream":false,"messages":[]}`)
	fams := scrape(t, url)
	labels := map[string]bool{}
	for _, m := range fams["sovra_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "model" {
				labels[l.GetValue()] = true
			}
		}
	}
	if len(labels) != 2 || !labels["real"] || !labels[otherModel] {
		t.Fatalf("%d model labels (want 2: real and %s); real: %v", len(labels), otherModel, labels["real"])
	}
}
