package energy

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/sovra/sovra/models"
	"github.com/sovra/sovra/node/agent"
)

// Defaults of Config.
const (
	// DefaultInterval is how often the GPUs are read. The counter source
	// is exact at any interval; power and estimates are better the
	// shorter it is.
	DefaultInterval = 15 * time.Second
	// DefaultWindow is the span of the joules-per-token gauges.
	DefaultWindow = 5 * time.Minute
	// maxGapIntervals: power and estimates are not integrated over gaps
	// longer than this many intervals (Meter.MaxGap).
	maxGapIntervals = 4
	// maxModels bounds the distinct models counted; tokens of further
	// models are counted under OtherModel.
	maxModels = 256
)

// OtherModel is the model under which tokens of models past the first
// maxModels are counted.
const OtherModel = "_other"

// Config configures a Sampler. Zero fields take the defaults.
type Config struct {
	// Node is this node's id (the node label of the metrics).
	Node string
	// Runner runs nvidia-smi; nil means agent.ExecRunner(0).
	Runner agent.CommandRunner
	// GPUNames, when set, gives this node's GPU names by index, for the
	// rated power of GPUs that report no power cap.
	GPUNames func() map[int]string
	// Layout, when set, gives the GPU indexes each model's replica uses on
	// this node, by model; a model missing from it counts as on every GPU.
	Layout func() map[string][]int
	// Now is the clock (time.Now).
	Now func() time.Time
	// Interval between samples (DefaultInterval).
	Interval time.Duration
	// Ticks, when not nil, replaces the ticker made from Interval: each
	// value received triggers one sample. Tests drive Run with it.
	Ticks <-chan time.Time
	// Window is the span of the gauges (DefaultWindow).
	Window time.Duration
	// OnError, when set, receives each failed sample (not those caused by
	// Run's ctx ending). The tokens wait for the next sample.
	OnError func(error)
}

// Sampler measures this node's GPUs every interval and attributes their
// energy to the output tokens the node's models produced. It is safe for
// concurrent use: AddTokens is called on the request path.
type Sampler struct {
	cfg   Config
	meter Meter // Sample's goroutine only

	mu     sync.Mutex
	tokens map[string]int64 // this interval's output tokens, by model
	led    ledger
	rec    recorder
}

// New returns a Sampler; Run or Sample make it measure.
func New(cfg Config) *Sampler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	return &Sampler{cfg: cfg, meter: Meter{MaxGap: maxGapIntervals * cfg.Interval},
		tokens: map[string]int64{}, led: newLedger()}
}

// ModelKey is the form models are counted under: the Ollama tag as
// models.NormalizeName gives it ("Llama3.1:8B" -> "llama3.1:8b",
// "qwen2.5" -> "qwen2.5:latest"), or the trimmed lower-case name when
// it does not parse.
func ModelKey(name string) string {
	if k, err := models.NormalizeName(name); err == nil {
		return k
	}
	return strings.ToLower(strings.TrimSpace(name))
}

// AddTokens counts output tokens a model produced on this node.
func (s *Sampler) AddTokens(model string, n int64) {
	if n <= 0 {
		return
	}
	m := ModelKey(model)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.led.output[m]; !known && len(s.led.output) >= maxModels {
		m = OtherModel
	}
	s.tokens[m] += n
	s.led.output[m] += n
}

// Sample reads the GPUs once and books the energy since the last
// reading. On an error nothing is booked and the interval's tokens wait
// for the next sample, whose energy covers both intervals. Calls must not
// overlap (Run makes them one after the other).
func (s *Sampler) Sample(ctx context.Context) error {
	readings, err := agent.ReadPower(ctx, s.cfg.Runner)
	if err != nil {
		return err
	}
	at := s.cfg.Now()
	gpus := s.meter.Step(at, readings, s.names())
	layout := s.layout()
	s.mu.Lock()
	defer s.mu.Unlock()
	tokens := s.tokens
	s.tokens = map[string]int64{}
	s.led.add(at, gpus, Attribute(gpus, tokens, layout), s.cfg.Window)
	return nil
}

func (s *Sampler) names() map[int]string {
	if s.cfg.GPUNames == nil {
		return nil
	}
	return s.cfg.GPUNames()
}

// layout is the configured layout with its models in ModelKey form.
func (s *Sampler) layout() map[string][]int {
	if s.cfg.Layout == nil {
		return nil
	}
	out := map[string][]int{}
	for m, gpus := range s.cfg.Layout() {
		k := ModelKey(m)
		out[k] = append(out[k], gpus...)
	}
	return out
}

// Run samples at once and then every interval until ctx ends, then
// returns nil.
func (s *Sampler) Run(ctx context.Context) error {
	ticks := s.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		if err := s.Sample(ctx); err != nil && ctx.Err() == nil && s.cfg.OnError != nil {
			s.cfg.OnError(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
	}
}

// Efficiency is each model's energy per output token over the window
// that ends at the last sample.
func (s *Sampler) Efficiency() map[string]Efficiency {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.led.efficiency()
}
