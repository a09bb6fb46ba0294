package api

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxModelLabels bounds how many distinct model names the metrics carry
// when the backend does not say which models it knows: the model is
// chosen by the client, so past this many, further names are counted
// under otherModel.
const maxModelLabels = 128

// labeler is a backend that labels requested models for the metrics: by
// their name when the node knows them, else otherModel (*router.Router).
type labeler interface {
	Label(model string) string
}

// otherModel is the model label of requests whose model arrived after
// maxModelLabels others.
const otherModel = "_other"

// Route families, the route label of the request metrics.
const (
	routeOpenAI    = "openai"
	routeAnthropic = "anthropic"
	routeOllama    = "ollama"
	routeAdmin     = "admin"
	routeInternal  = "internal"
	routeOther     = "other"
)

// routeOf names the route family of a path for the metrics.
func routeOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/v1/messages"):
		return routeAnthropic
	case strings.HasPrefix(path, "/v1/"):
		return routeOpenAI
	case strings.HasPrefix(path, "/api/"), strings.HasPrefix(path, "/internal/v1/forward/api/"):
		return routeOllama
	case strings.HasPrefix(path, "/admin/"):
		return routeAdmin
	case strings.HasPrefix(path, "/internal/"):
		return routeInternal
	}
	return routeOther
}

// metrics are a node's Prometheus metrics, in a registry of its own so that
// several nodes in one process keep theirs apart.
type metrics struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec
	inFlight    *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	firstToken  *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	forwarded   *prometheus.CounterVec
	streamFrame *prometheus.CounterVec

	// labeler, when set, labels models; else the first maxModelLabels
	// names each keep a label of their own.
	labeler labeler

	// The children of the vectors that requests touch, looked up once
	// per label set: WithLabelValues hashes the labels under a lock, and
	// a request made eight such look-ups.
	flights  series[string, prometheus.Gauge]
	counts   series[requestKey, prometheus.Counter]
	times    series[[2]string, prometheus.Observer]
	tokenSum series[[2]string, prometheus.Counter]

	mu     sync.Mutex
	models map[string]struct{}
}

// durationBuckets suit LLM requests, which take from milliseconds (a
// listing) to minutes (a long generation).
var durationBuckets = []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// firstTokenBuckets suit the wait for a stream's first frame, which
// includes loading a model.
var firstTokenBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		reg:    reg,
		models: make(map[string]struct{}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_requests_total",
			Help: "Requests answered, by route family, requested model and HTTP status.",
		}, []string{"route", "model", "status"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sovra_requests_in_flight",
			Help: "Requests being answered, by requested model (\"\" until the model is known).",
		}, []string{"model"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sovra_request_duration_seconds",
			Help:    "Time from a request's start to the end of its response (of its stream when streamed).",
			Buckets: durationBuckets,
		}, []string{"route", "model"}),
		firstToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sovra_time_to_first_token_seconds",
			Help:    "Time from a streamed request's start to its first frame.",
			Buckets: firstTokenBuckets,
		}, []string{"model"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_tokens_total",
			Help: "Tokens processed, by model and kind (prompt or completion).",
		}, []string{"model", "kind"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_forwarded_requests_total",
			Help: "Requests served here that another node forwarded.",
		}, []string{"model"}),
		streamFrame: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_stream_events_total",
			Help: "Frames (server-sent events or NDJSON lines) sent on streamed responses.",
		}, []string{"model"}),
	}
	m.flights.make = func(model string) prometheus.Gauge { return m.inFlight.WithLabelValues(model) }
	m.counts.make = func(k requestKey) prometheus.Counter {
		return m.requests.WithLabelValues(k.route, k.model, strconv.Itoa(k.status))
	}
	m.times.make = func(k [2]string) prometheus.Observer { return m.duration.WithLabelValues(k[0], k[1]) }
	m.tokenSum.make = func(k [2]string) prometheus.Counter { return m.tokens.WithLabelValues(k[0], k[1]) }
	m.reg.MustRegister(m.requests, m.inFlight, m.duration, m.firstToken, m.tokens, m.forwarded, m.streamFrame,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

// modelLabel is the label of a requested model, keeping the number of
// distinct labels bounded.
func (m *metrics) modelLabel(model string) string {
	if model == "" {
		return ""
	}
	if m.labeler != nil {
		return m.labeler.Label(model)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.models[model]; ok {
		return model
	}
	if len(m.models) >= maxModelLabels {
		return otherModel
	}
	model = strings.Clone(model)
	m.models[model] = struct{}{}
	return model
}

// begin counts a request in flight before its model is known.
func (m *metrics) begin(ri *reqInfo) {
	ri.metrics = m
	ri.flightLabel = ""
	ri.inFlight = true
	m.flights.get("").Inc()
}

// setModel records the requested model of a request, moving it in the
// in-flight gauge from the label it had to the model's.
func (ri *reqInfo) setModel(model string) {
	ri.model = model
	if ri.metrics == nil || !ri.inFlight {
		return
	}
	label := ri.metrics.modelLabel(model)
	if label == ri.flightLabel {
		return
	}
	ri.metrics.flights.get(ri.flightLabel).Dec()
	ri.metrics.flights.get(label).Inc()
	ri.flightLabel = label
}

// firstFrame records the wait for a stream's first frame.
func (m *metrics) firstFrame(ri *reqInfo, wait time.Duration) {
	m.firstToken.WithLabelValues(m.modelLabel(ri.model)).Observe(wait.Seconds())
}

// end records a request that has ended.
func (m *metrics) end(ri *reqInfo, status int, latency time.Duration) {
	model := m.modelLabel(ri.model)
	route := routeOf(ri.path)
	if ri.inFlight {
		m.flights.get(ri.flightLabel).Dec()
		ri.inFlight = false
	}
	m.counts.get(requestKey{route, model, status}).Inc()
	m.times.get([2]string{route, model}).Observe(latency.Seconds())
	if ri.promptTokens > 0 {
		m.tokenSum.get([2]string{model, "prompt"}).Add(float64(ri.promptTokens))
	}
	if ri.completionTokens > 0 {
		m.tokenSum.get([2]string{model, "completion"}).Add(float64(ri.completionTokens))
	}
	if ri.forwarded {
		m.forwarded.WithLabelValues(model).Inc()
	}
	if ri.frames > 0 {
		m.streamFrame.WithLabelValues(model).Add(float64(ri.frames))
	}
}

// requestKey is the label set of sovra_requests_total.
type requestKey struct {
	route, model string
	status       int
}

// series memoises a vector's children by their labels (few: the model
// labels are bounded by maxModelLabels).
type series[K comparable, V any] struct {
	m    sync.Map
	make func(K) V
}

func (s *series[K, V]) get(k K) V {
	if v, ok := s.m.Load(k); ok {
		return v.(V)
	}
	v, _ := s.m.LoadOrStore(k, s.make(k))
	return v.(V)
}
