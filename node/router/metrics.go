package router

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovra/sovra/node/router/admit"
	"github.com/sovra/sovra/node/router/balance"
)

// metrics are the router's Prometheus metrics. Model labels are Ollama
// tags of requests that reached routing (bounded like the admission
// queues); node labels are cluster members.
type metrics struct {
	decisions *prometheus.CounterVec
	retries   *prometheus.CounterVec
	forwards  *prometheus.CounterVec
	rejects   *prometheus.CounterVec
	trips     *prometheus.CounterVec
	queueWait *prometheus.HistogramVec
	live      *liveCollector
}

// queueWaitBuckets run from no wait to the default queue timeout.
var queueWaitBuckets = []float64{0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

func newMetrics(r *Router) *metrics {
	return &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_routing_decisions_total",
			Help: "Replica choices, by model and reason (ttf, affinity, round-robin, least-connections, only).",
		}, []string{"model", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_routing_retries_total",
			Help: "Requests tried again on another replica before their first byte, by model.",
		}, []string{"model"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_routing_forwards_total",
			Help: "Requests sent to a replica on another node, by model and node.",
		}, []string{"model", "node"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_admission_rejected_total",
			Help: "Requests the admission queue turned away, by model and reason.",
		}, []string{"model", "reason"}),
		trips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sovra_breaker_trips_total",
			Help: "Times a replica's circuit breaker opened, by node and model.",
		}, []string{"node", "model"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sovra_queue_wait_seconds",
			Help:    "Time requests waited in the admission queue for a slot on this node, by model.",
			Buckets: queueWaitBuckets,
		}, []string{"model"}),
		live: &liveCollector{r: r},
	}
}

func (m *metrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.decisions, m.retries, m.forwards, m.rejects, m.trips, m.queueWait, m.live)
}

// The model arguments below are labels: normalized names (see
// Router.label).

func (m *metrics) decided(model string, why balance.Reason) {
	m.decisions.WithLabelValues(model, string(why)).Inc()
}

func (m *metrics) retried(model string) { m.retries.WithLabelValues(model).Inc() }

func (m *metrics) forwarded(model, node string) {
	m.forwards.WithLabelValues(model, node).Inc()
}

func (m *metrics) tripped(node, model string) { m.trips.WithLabelValues(node, model).Inc() }

func (m *metrics) waited(model string, d time.Duration) {
	m.queueWait.WithLabelValues(model).Observe(d.Seconds())
}

func (m *metrics) rejected(model string, err error) {
	reason := "other"
	switch {
	case errors.Is(err, admit.ErrKeyOverShare):
		reason = "key_over_share"
	case errors.Is(err, admit.ErrSaturated):
		reason = "queue_full"
	case errors.Is(err, admit.ErrTimeout):
		reason = "timeout"
	case errors.Is(err, admit.ErrWaitTooLong):
		reason = "wait_too_long"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	case errors.Is(err, ErrSentBack):
		reason = SentBackCode
	}
	m.rejects.WithLabelValues(model, reason).Inc()
}

// liveCollector reports this node's live load per model when scraped.
type liveCollector struct{ r *Router }

var (
	runningDesc = prometheus.NewDesc("sovra_running_requests", "Requests generating on this node's Ollama, by model.", []string{"model"}, nil)
	queuedDesc  = prometheus.NewDesc("sovra_queued_requests", "Requests waiting for a slot on this node, by model.", []string{"model"}, nil)
	slotsDesc   = prometheus.NewDesc("sovra_slots", "Generations this node's Ollama runs at once, by model.", []string{"model"}, nil)
	tpsDesc     = prometheus.NewDesc("sovra_tokens_per_second", "Moving average of one stream's decode speed on this node, by model.", []string{"model"}, nil)
	ttftDesc    = prometheus.NewDesc("sovra_ttft_average_seconds", "Moving average of the time from a slot to the first token on this node, by model.", []string{"model"}, nil)
)

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{runningDesc, queuedDesc, slotsDesc, tpsDesc, ttftDesc} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	for model, m := range c.r.models() { // not Report: a scrape is not a report
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(m.Running), model)
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(m.Queued), model)
		ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(m.Slots), model)
		ch <- prometheus.MustNewConstMetric(tpsDesc, prometheus.GaugeValue, m.TokensPerSec, model)
		ch <- prometheus.MustNewConstMetric(ttftDesc, prometheus.GaugeValue, m.TTFTMs/1000, model)
	}
}
