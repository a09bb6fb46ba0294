package ui

import (
	"bufio"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
)

// Hostile text in the cluster's data (labels, key names, reasons, audit
// details are free text) is shown escaped on every page, and no page
// carries inline script.
func TestHostileNamesAreEscaped(t *testing.T) {
	const (
		script = `<script>alert(1)</script>`
		attr   = `"><img src=x onerror=alert(1)>`
		href   = `javascript:alert(1)`
	)
	r := newRig(t)
	r.fake.edit(func(d *fakeData) {
		d.nodes[0].Labels = map[string]string{"zone": script, attr: href}
		d.nodes[0].Models = []string{attr}
		d.nodes[0].StatusReason = script
		d.status.Warning = script
		d.deps[0].Reason = attr
		d.deps[0].Constraints = []string{script}
		d.deps[0].Placements[0].Reason = script
		d.keys[0].Name = attr
		d.keys[0].Models = []string{script}
		d.audit[0].Detail = script
		d.audit[0].Target = attr
		d.audit[0].Actor = href
		d.usage[0].Model = attr
	})
	b := r.browser()
	b.signin(adminToken)
	inline := regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	handlers := regexp.MustCompile(`(?i)<[a-z][^>]*\son[a-z]+=`)
	for _, path := range []string{"/ui/", "/ui/nodes", "/ui/nodes/n1", "/ui/nodes/n1/cordon", "/ui/deployments/chat",
		"/ui/keys", "/ui/audit?actor=" + "%3Cscript%3E", "/ui/signin"} {
		resp, body := b.get(path)
		if resp.StatusCode >= 400 {
			t.Fatalf("%s: %d\n%s", path, resp.StatusCode, body)
		}
		for _, bad := range []string{script, attr, `href="javascript:`} {
			if strings.Contains(body, bad) {
				t.Errorf("%s shows %q unescaped", path, bad)
			}
		}
		for _, tag := range inline.FindAllString(body, -1) {
			if !strings.Contains(tag, `src="/ui/static/`) {
				t.Errorf("%s has an inline script: %s", path, tag)
			}
		}
		if m := handlers.FindString(body); m != "" {
			t.Errorf("%s has an event handler attribute %q", path, m)
		}
	}
	_, body := b.get("/ui/nodes")
	if !strings.Contains(body, "zone=&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatal("the hostile label is not shown at all")
	}
}

// A node id that needs escaping in a URL is escaped in the links.
func TestLinksEscapeIDs(t *testing.T) {
	r := newRig(t)
	r.fake.edit(func(d *fakeData) { d.nodes[0].ID = "a/b?c" })
	b := r.browser()
	b.signin(adminToken)
	_, body := b.get("/ui/nodes")
	if !strings.Contains(body, `href="/ui/nodes/a%2fb%3fc"`) && !strings.Contains(body, `href="/ui/nodes/a%2Fb%3Fc"`) {
		t.Fatalf("node link not escaped:\n%s", body)
	}
}

// The pages show what the admin API says, unhealthy things first.
func TestOverviewShowsTroubleFirst(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	_, body := b.get("/ui/")
	for _, want := range []string{"Node n2 is down.", "Deployment chat is partial: one replica cannot be placed.",
		`<td class="num">4.0 GiB</td>`, `<td class="num">76.0 GiB</td>`, "1 / 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Index(body, `data-node="n2"`) > strings.Index(body, `data-node="n1"`) {
		t.Error("the down member is not listed first")
	}
	_, body = b.get("/ui/deployments/chat")
	for _, want := range []string{`data-node="n1" data-state="ready"`, "42.0", "node is down", "<details id=\"explain-details\" open>"} {
		if !strings.Contains(body, want) {
			t.Errorf("deployment page lacks %q", want)
		}
	}
	if resp, body := b.get("/ui/deployments/nope"); resp.StatusCode != 404 || !strings.Contains(body, "no deployment nope") {
		t.Errorf("unknown deployment: %d", resp.StatusCode)
	}
}

// The stream announces itself, then each change (one event for a burst)
// with the state's index, ticks, and a signout once the session ends.
func TestStream(t *testing.T) {
	changes := make(chan chan struct{}, 1)
	cur := make(chan struct{})
	changes <- cur
	r := newRig(t, func(c *Config) {
		c.Changed = func() <-chan struct{} {
			ch := <-changes
			changes <- ch
			return ch
		}
		c.Refresh = time.Hour
	})
	change := func(index uint64) {
		ch := <-changes
		r.index.Store(index)
		changes <- make(chan struct{})
		close(ch)
	}
	pr, pw := io.Pipe()
	alive := make(chan bool, 1)
	alive <- true
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := bufio.NewWriter(pw)
		r.ui.stream(w, func() bool { v := <-alive; alive <- v; return v })
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		events := bufio.NewReader(pr)
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				return
			}
			lines <- line
		}
	}()
	next := func() string {
		t.Helper()
		var ev []string
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatal("the stream ended")
				}
				if line == "\n" {
					return strings.Join(ev, " ")
				}
				ev = append(ev, strings.TrimSpace(line))
			case <-time.After(10 * time.Second):
				t.Fatalf("no event within 10s (so far %q)", ev)
			}
		}
	}
	if got := next(); got != "retry: 2000 event: hello data: 40" {
		t.Fatalf("first event %q", got)
	}
	change(41)
	change(42)
	if got := next(); got != "event: change data: 42" {
		t.Fatalf("after a change: %q", got)
	}
	<-alive
	alive <- false
	change(43)
	if got := next(); got != "event: signout data: 0" {
		t.Fatalf("after the session ended: %q", got)
	}
	<-done
}

func TestChart(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var bs []bucket
	for i := range 4 {
		b := bucket{Start: start.Add(time.Duration(i) * time.Hour), End: start.Add(time.Duration(i+1) * time.Hour), Tokens: map[series]int64{}}
		for k := range 8 {
			b.Tokens[series{Key: "key-" + string(rune('a'+k)), Model: "m"}] = int64(100 * (k + 1) * (i + 1))
		}
		bs = append(bs, b)
	}
	c := buildChart(bs, func(s series) string { return s.Key }, "test span")
	if c.Empty || len(c.Legend) != maxSeries || c.Legend[maxSeries-1].Label != otherSeries || c.Legend[0].Label != "key-h" {
		t.Fatalf("legend %+v", c.Legend)
	}
	if len(c.Bars) != 4*maxSeries {
		t.Fatalf("%d bars", len(c.Bars))
	}
	// The tallest stack (bucket 4: 3600*4 = 14400 tokens) fits the scale.
	for _, b := range c.Bars {
		if b.Y < plotT-0.01 || b.H <= 0 || b.Y+b.H > chartH-plotB+0.01 {
			t.Fatalf("bar out of the plot: %+v", b)
		}
	}
	if c.YTicks[len(c.YTicks)-1].Label != "20k" {
		t.Fatalf("top tick %+v", c.YTicks)
	}
	if e := buildChart(bs[:0:0], nil, "x"); !e.Empty {
		t.Fatal("an empty chart is not empty")
	}
	for n, want := range map[int64]int64{1: 1, 3: 5, 7: 10, 14400: 20000, 50001: 100000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
}

// A live stream over HTTP: it needs a session, sends its first event at
// once, and ends when the dashboard closes (so that a node's graceful
// stop does not wait for it).
func TestEventsOverHTTPEndOnClose(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.signin(adminToken)
	req, err := http.NewRequest(http.MethodGet, r.url+"/ui/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(b.cookies[sessionCookie])
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	events := bufio.NewReader(resp.Body)
	if line, err := events.ReadString('\n'); err != nil || line != "retry: 2000\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	r.ui.Close()
	if _, err := io.ReadAll(events); err != nil {
		t.Fatalf("the stream did not end cleanly: %v", err)
	}
}

// The keys and usage page shows the energy the GPUs spent per 1,000
// output tokens, marked when partly estimated, and a dash where nothing
// was measured.
func TestUsageShowsEnergyPerToken(t *testing.T) {
	r := newRig(t)
	r.fake.edit(func(d *fakeData) {
		d.usage[0].EnergyJoules, d.usage[0].EnergyEstimated = 120, true // 60 completion tokens
		d.usage = append(d.usage, client.UsageRow{Key: "key-1", Model: "mistral:7b", Requests: 1, CompletionTokens: 5})
	})
	b := r.browser()
	b.signin(adminToken)
	resp, body := b.get("/ui/keys")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/ui/keys: %d", resp.StatusCode)
	}
	row := func(model string) string {
		i := strings.Index(body, "<td>"+model+"</td>")
		if i < 0 {
			t.Fatalf("no totals row for %s:\n%s", model, body)
		}
		return body[i : i+strings.Index(body[i:], "</tr>")]
	}
	if got := row("llama3.2:1b"); !strings.Contains(got, "~2000 J") {
		t.Errorf("llama3.2:1b row %q, want ~2000 J per 1k output tokens", got)
	}
	if got := row("mistral:7b"); !strings.Contains(got, "–") {
		t.Errorf("mistral:7b row %q, want a dash (no energy measured)", got)
	}
}
