package energy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric descriptions. Every series carries the node label, so that
// series scraped from several nodes stay apart however they are relabelled.
var (
	descJoules = prometheus.NewDesc("sovra_energy_joules_total",
		"Energy of this node's GPUs attributed to a model's output tokens, in joules, by how it was found "+
			"(counter: the GPU's energy counter; power: power draw integrated; estimate: rated power times utilisation, not measured).",
		[]string{"model", "node", "source"}, nil)
	descMeasured = prometheus.NewDesc("sovra_energy_output_tokens_total",
		"Output tokens that energy was attributed to (those produced while the model's GPUs were measured): "+
			"the denominator of sovra_energy_joules_total.",
		[]string{"model", "node"}, nil)
	descOutput = prometheus.NewDesc("sovra_output_tokens_total",
		"Output tokens this node's models produced (eval_count of each finished generation on this node's Ollama).",
		[]string{"model", "node"}, nil)
	descIdle = prometheus.NewDesc("sovra_energy_idle_joules_total",
		"Energy of a GPU over intervals in which no model on it produced a token, in joules: attributed to no model.",
		[]string{"node", "gpu", "source"}, nil)
	descGPU = prometheus.NewDesc("sovra_gpu_energy_joules_total",
		"Energy measured or estimated per GPU, in joules (attributed and idle together).",
		[]string{"node", "gpu", "source"}, nil)
	descPer1k = prometheus.NewDesc("sovra_energy_joules_per_1k_output_tokens",
		"Joules per 1,000 output tokens of a model on this node over the sliding window (--energy-window).",
		[]string{"model", "node"}, nil)
	descEstimated = prometheus.NewDesc("sovra_energy_estimated_ratio",
		"Part of a model's energy over the sliding window that is estimated from rated power and utilisation, 0 to 1.",
		[]string{"model", "node"}, nil)
)

// Collector returns the Sampler's metrics for a Prometheus registry.
func (s *Sampler) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Sampler }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJoules, descMeasured, descOutput, descIdle, descGPU, descPer1k, descEstimated} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.s.metrics() {
		ch <- m
	}
}

// metrics are the sampler's metrics now, made under its lock and sent
// after it, so that a slow scrape does not hold up AddTokens.
func (s *Sampler) metrics() []prometheus.Metric {
	node := s.cfg.Node
	var out []prometheus.Metric
	add := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, t, v, labels...))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, j := range s.led.joules {
		add(descJoules, prometheus.CounterValue, j, k.model, node, string(k.source))
	}
	for m, n := range s.led.measured {
		add(descMeasured, prometheus.CounterValue, float64(n), m, node)
	}
	for m, n := range s.led.output {
		add(descOutput, prometheus.CounterValue, float64(n), m, node)
	}
	for k, j := range s.led.idle {
		add(descIdle, prometheus.CounterValue, j, node, gpuLabel(k.gpu), string(k.source))
	}
	for k, j := range s.led.gpu {
		add(descGPU, prometheus.CounterValue, j, node, gpuLabel(k.gpu), string(k.source))
	}
	for m, e := range s.led.efficiency() {
		if e.Tokens > 0 {
			add(descPer1k, prometheus.GaugeValue, e.JoulesPer1k(), m, node)
			add(descEstimated, prometheus.GaugeValue, e.EstimatedShare(), m, node)
		}
	}
	return out
}
