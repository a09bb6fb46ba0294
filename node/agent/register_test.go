package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/models"
	"github.com/sovra/sovra/node/agent"
	"github.com/sovra/sovra/node/backend/ollama"
)

// regCluster applies commands to a local state machine, as a one-node
// cluster would, and counts the registrations it was asked for.
type regCluster struct {
	m *state.Machine

	mu        sync.Mutex
	index     uint64
	registers int
	keys      []string
}

func (c *regCluster) Apply(_ context.Context, cmd state.Command) (state.Outcome, error) {
	entry, err := state.Encode(cmd)
	if err != nil {
		return state.Outcome{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd.Type == state.TypeRegisterModel {
		c.registers++
		c.keys = append(c.keys, cmd.Key)
	}
	c.index++
	out := c.m.Apply(c.index, entry)
	return out, out.Err()
}

func (c *regCluster) do(t *testing.T, typ state.Type, body any) {
	t.Helper()
	if _, err := c.Apply(context.Background(), state.Command{Type: typ, Body: body}); err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
}

func (c *regCluster) registerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.registers
}

// registered returns the registered model called name, or nil.
func (c *regCluster) registered(name string) *state.ModelSpec {
	var out *state.ModelSpec
	c.m.Read(func(s *state.State) {
		if m := s.RegisteredModel(name); m != nil {
			cp := *m
			out = &cp
		}
	})
	return out
}

// regHarness is a simulated Ollama and a registrar over a regCluster.
type regHarness struct {
	t   *testing.T
	sim *ollamasim.Server
	c   *regCluster
	reg *agent.ModelRegistrar
}

// coderOnDisk is a model no catalog knows, as the simulated Ollama holds it.
var coderOnDisk = ollamasim.ModelConfig{Name: "acme/coder:7b", Family: "qwen2", ParameterSize: "7.6B", Quantization: "Q4_K_M",
	Size: 4_683_073_184, ContextLength: 32768, EmbeddingLength: 3584, Layers: 28, Heads: 28, KVHeads: 4}

// markerOnDisk is another unknown model, always on the simulated disk,
// whose name sorts after every other the tests deploy (see settle).
var markerOnDisk = func() ollamasim.ModelConfig {
	m := coderOnDisk
	m.Name = "zz/marker:7b"
	return m
}()

func newRegHarness(t *testing.T, onDisk ...ollamasim.ModelConfig) *regHarness {
	t.Helper()
	sim := ollamasim.StartTest(t, ollamasim.Config{Models: append([]ollamasim.ModelConfig{markerOnDisk}, onDisk...), Registry: []ollamasim.ModelConfig{coderOnDisk}})
	tr := ollama.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	be, err := ollama.New(sim.URL(), &http.Client{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	h := &regHarness{t: t, sim: sim, c: &regCluster{m: state.NewMachine()}}
	h.reg = &agent.ModelRegistrar{
		NodeID: "n1", State: h.c.m, Proposer: h.c, Backend: be, Logger: zaptest.NewLogger(t),
		Interval: 50 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}
	return h
}

func (h *regHarness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.reg.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	})
}

func (h *regHarness) deploy(name, model string) {
	h.t.Helper()
	h.c.do(h.t, state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: name, Model: model, Replicas: 1}})
}

// regWait waits until cond holds.
func regWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 20*time.Second, what, cond)
}

// settle deploys the marker model and waits until it is registered. The
// registrar's passes run one after another and register in name order, so
// by then every pass that began before the marker was deployed has ended,
// and the pass that registered the marker, which saw every deployment made
// before it, has registered whatever else it would. A test that then finds
// a model unregistered knows that the registrar looked at it and left it.
func (h *regHarness) settle() {
	h.t.Helper()
	h.deploy("zz-marker", markerOnDisk.Name)
	regWait(h.t, "the marker model registered", func() bool { return h.c.registered(markerOnDisk.Name) != nil })
}

// registrations returns the idempotency keys of the registrations asked
// for, one per request.
func (c *regCluster) registrations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.keys)
}

// countPrefix counts the keys that start with prefix.
func countPrefix(keys []string, prefix string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// pending returns the durations of the timers not yet fired.
func (c *fakeClock) pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, 0, len(c.waiters))
	for _, w := range c.waiters {
		out = append(out, w.at.Sub(c.now))
	}
	return out
}

func TestRegistrarReadsFiguresFromOllama(t *testing.T) {
	h := newRegHarness(t, coderOnDisk)
	h.run()
	h.deploy("coder", "Acme/Coder:7B")
	regWait(t, "the model registered", func() bool { return h.c.registered("acme/coder:7b") != nil })
	got := h.c.registered("acme/coder:7b")
	want := state.ModelSpec{
		Name: "acme/coder:7b", Family: "acme/coder", Architecture: "qwen2", Parameters: 7_600_000_000,
		Quantization: "Q4_K_M", FileSize: 4_683_073_184, Layers: 28, Embedding: 3584, Heads: 28, KVHeads: 4,
		HeadDimK: 128, HeadDimV: 128, ContextLength: 32768, Source: "Ollama /api/show on node n1",
	}
	got.CreatedIndex, got.ModifiedIndex = 0, 0
	if *got != want {
		t.Fatalf("registered\n %+v\nwant\n %+v", *got, want)
	}
	// Once registered, nothing more is asked of the cluster: the passes
	// up to the marker's registration left the model alone.
	h.settle()
	keys := h.c.registrations()
	if len(keys) != 2 || countPrefix(keys, "model:acme/coder:7b@") != 1 || countPrefix(keys, "model:zz/marker:7b@") != 1 {
		t.Fatalf("registrations %q, want acme/coder:7b's then the marker's, once each", keys)
	}
}

// TestRegistrarTakesModelsWithoutAFileType checks that a model whose GGUF
// has no general.file_type (some converters leave it out), and so no known
// quantisation, registers with its file size from /api/tags.
func TestRegistrarTakesModelsWithoutAFileType(t *testing.T) {
	noType := coderOnDisk
	noType.Quantization = "unknown" // the simulator then leaves general.file_type out
	h := newRegHarness(t, noType)
	h.run()
	h.deploy("coder", "acme/coder:7b")
	regWait(t, "the model registered", func() bool { return h.c.registered("acme/coder:7b") != nil })
	if got := h.c.registered("acme/coder:7b"); got.FileSize != uint64(noType.Size) || got.Quantization != "" {
		t.Fatalf("registered %+v, want the file size %d and no quantisation", *got, noType.Size)
	}
}

func TestRegistrarLeavesKnownModelsAlone(t *testing.T) {
	cases := []struct {
		name  string
		setup func(h *regHarness)
	}{
		{"built-in model", func(h *regHarness) { h.deploy("llama", "llama3.2:1b") }},
		{"registered model", func(h *regHarness) {
			m, err := models.FromShow("acme/coder:7b", map[string]any{
				"general.architecture": "llama", "general.parameter_count": 1e9, "general.file_type": 15.0,
				"llama.block_count": 2.0, "llama.context_length": 2048.0, "llama.embedding_length": 64.0,
				"llama.attention.head_count": 4.0,
			})
			if err != nil {
				t.Fatal(err)
			}
			h.c.do(t, state.TypeRegisterModel, state.RegisterModel{Model: state.SpecOf(m)})
			h.deploy("coder", "acme/coder:7b")
		}},
		{"configured catalog entry", func(h *regHarness) {
			h.reg.Catalog = models.NewCatalog()
			m, _ := models.Lookup("llama3.2:1b")
			m.Name, m.Aliases = "acme/coder:7b", nil
			if err := h.reg.Catalog.Register(m); err != nil {
				t.Fatal(err)
			}
			h.deploy("coder", "acme/coder:7b")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newRegHarness(t, coderOnDisk, ollamasim.ModelConfig{Name: "llama3.2:1b"})
			tc.setup(h)
			before := h.c.registerCount()
			h.run()
			h.settle()
			if got := h.c.registerCount(); got != before+1 {
				t.Fatalf("%d registrations besides the marker's: a known model was registered (keys %q)", got-before-1, h.c.registrations())
			}
		})
	}
}

func TestRegistrarWaitsUntilTheModelIsOnDisk(t *testing.T) {
	h := newRegHarness(t)
	clk := newFakeClock()
	h.reg.Clock, h.reg.Interval = clk, time.Hour
	h.deploy("coder", "acme/coder:7b")
	h.run()
	// The registrar listed Ollama, did not find the model, and set its
	// timer to look again in an interval.
	clk.await(t, time.Hour)
	if n := h.c.registerCount(); n != 0 {
		t.Fatalf("%d registrations of a model not on disk", n)
	}
	// An operator pulls it on this node: the next look at Ollama finds it.
	stream := false
	if err := h.sim.Client().Pull(context.Background(), &api.PullRequest{Model: "acme/coder:7b", Stream: &stream},
		func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	regWait(t, "the pulled model registered", func() bool { return h.c.registered("acme/coder:7b") != nil })
}

func TestRegistrarBacksOffFiguresOllamaCannotGive(t *testing.T) {
	// Three heads cannot share two KV heads: FromShow refuses the model,
	// and the registrar tries again later, with backoff.
	bad := coderOnDisk
	bad.Heads, bad.KVHeads = 3, 2
	h := newRegHarness(t, bad)
	clk := newFakeClock()
	h.reg.Clock, h.reg.Interval = clk, time.Hour
	shows := func() int {
		n := 0
		for _, r := range h.sim.Requests() {
			if r.Endpoint == "/api/show" {
				n++
			}
		}
		return n
	}
	h.deploy("coder", "acme/coder:7b")
	h.run()
	// RetryMin 20ms doubling up to RetryMax 100ms: each failed attempt
	// sets the registrar's timer to the next delay, and only that timer
	// starts another attempt.
	for i, d := range []time.Duration{20, 40, 80, 100, 100} {
		d *= time.Millisecond
		clk.await(t, d)
		if n := shows(); n != i+1 {
			t.Fatalf("after %d failed attempts, %d calls to /api/show", i+1, n)
		}
		clk.Advance(d)
	}
	if h.c.registerCount() != 0 || h.c.registered("acme/coder:7b") != nil {
		t.Fatal("figures FromShow refuses were registered")
	}
}

// barrier holds registrations until two have arrived, then lets them
// through one at a time, so that two registrars race for real. first is
// closed when the first arrives.
type barrier struct {
	agent.Reporter
	mu         sync.Mutex
	arrived    int
	first, all chan struct{}
}

func (b *barrier) Apply(ctx context.Context, cmd state.Command) (state.Outcome, error) {
	if cmd.Type == state.TypeRegisterModel {
		b.mu.Lock()
		switch b.arrived++; b.arrived {
		case 1:
			close(b.first)
		case 2:
			close(b.all)
		}
		b.mu.Unlock()
		select {
		case <-b.all:
		case <-ctx.Done():
			return state.Outcome{}, ctx.Err()
		}
	}
	return b.Reporter.Apply(ctx, cmd)
}

func TestRegistrarTakesAnotherNodesRegistration(t *testing.T) {
	// Two nodes with the model register it at the same time: one write
	// wins, the other finds it registered (state.ErrExists) and is done
	// too, with no retry.
	h := newRegHarness(t, coderOnDisk)
	clk := newFakeClock()
	gate := &barrier{Reporter: h.c, first: make(chan struct{}), all: make(chan struct{})}
	h.reg.Clock, h.reg.Interval, h.reg.Proposer = clk, time.Hour, gate
	other := *h.reg
	other.NodeID = "n2"
	h.deploy("coder", "acme/coder:7b")
	h.run()
	select {
	case <-gate.first:
	case <-time.After(20 * time.Second):
		t.Fatal("n1 never asked to register the model")
	}
	// n2 reads a later state than n1, so its write has another
	// idempotency key: the state machine refuses it as a duplicate
	// model, rather than answering it as a retry of n1's.
	h.deploy("filler", "llama3.2:1b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}()
	regWait(t, "the model registered", func() bool { return h.c.registered("acme/coder:7b") != nil })
	// Each registrar ends its pass by setting its timer: the interval
	// when the model is done, a retry when it is not.
	testwait.Until(t, 20*time.Second, func() bool { return len(clk.pending()) == 2 },
		func() string { return fmt.Sprintf("both registrars to end their pass (timers %v)", clk.pending()) })
	for _, d := range clk.pending() {
		if d != time.Hour {
			t.Fatalf("timers %v: a registrar will try again, want both done (1h, the interval)", clk.pending())
		}
	}
	if keys := h.c.registrations(); len(keys) != 2 || keys[0] == keys[1] {
		t.Fatalf("registrations %q, want one from each node, with different keys", keys)
	}
}

func TestRegistrarNeedsItsFields(t *testing.T) {
	err := (&agent.ModelRegistrar{}).Run(context.Background())
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Run without fields: %v", err)
	}
}
