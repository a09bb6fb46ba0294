package agent_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
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

func newRegHarness(t *testing.T, onDisk ...ollamasim.ModelConfig) *regHarness {
	t.Helper()
	sim := ollamasim.StartTest(t, ollamasim.Config{Models: append([]ollamasim.ModelConfig{}, onDisk...), Registry: []ollamasim.ModelConfig{coderOnDisk}})
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

// regWait polls cond until it holds or the wait times out.
func regWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// regQuiet checks that cond keeps holding for a while.
func regQuiet(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !cond() {
			t.Fatalf("%s", what)
		}
	}
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
	// Once registered, nothing more is asked of the cluster.
	regQuiet(t, "registered more than once", func() bool { return h.c.registerCount() == 1 })
	if key := h.c.keys[0]; !strings.HasPrefix(key, "model:acme/coder:7b@") {
		t.Fatalf("idempotency key %q", key)
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
			regQuiet(t, "a known model was registered", func() bool { return h.c.registerCount() == before })
		})
	}
}

func TestRegistrarWaitsUntilTheModelIsOnDisk(t *testing.T) {
	h := newRegHarness(t)
	h.run()
	h.deploy("coder", "acme/coder:7b")
	regQuiet(t, "a model not on disk was registered", func() bool { return h.c.registerCount() == 0 })
	// An operator pulls it on this node: the next look at Ollama finds it.
	stream := false
	if err := h.sim.Client().Pull(context.Background(), &api.PullRequest{Model: "acme/coder:7b", Stream: &stream},
		func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	regWait(t, "the pulled model registered", func() bool { return h.c.registered("acme/coder:7b") != nil })
}

func TestRegistrarBacksOffFiguresOllamaCannotGive(t *testing.T) {
	// Three heads cannot share two KV heads: FromShow refuses the model,
	// and the registrar tries again later, with backoff.
	bad := coderOnDisk
	bad.Heads, bad.KVHeads = 3, 2
	h := newRegHarness(t, bad)
	h.run()
	h.deploy("coder", "acme/coder:7b")
	shows := func() int {
		n := 0
		for _, r := range h.sim.Requests() {
			if r.Endpoint == "/api/show" {
				n++
			}
		}
		return n
	}
	regWait(t, "two attempts", func() bool { return shows() >= 2 })
	time.Sleep(300 * time.Millisecond)
	if n := shows(); n > 8 {
		t.Fatalf("%d attempts in about 300ms: no backoff", n)
	}
	if h.c.registerCount() != 0 || h.c.registered("acme/coder:7b") != nil {
		t.Fatal("figures FromShow refuses were registered")
	}
}

func TestRegistrarTakesAnotherNodesRegistration(t *testing.T) {
	// Two nodes with the model register it at about the same time: one
	// write wins, the other finds it registered and is done too.
	h := newRegHarness(t, coderOnDisk)
	other := *h.reg
	other.NodeID = "n2"
	h.run()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}()
	h.deploy("coder", "acme/coder:7b")
	regWait(t, "the model registered", func() bool { return h.c.registered("acme/coder:7b") != nil })
	regQuiet(t, "more than two registrations", func() bool { return h.c.registerCount() <= 2 })
}

func TestRegistrarNeedsItsFields(t *testing.T) {
	err := (&agent.ModelRegistrar{}).Run(context.Background())
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Run without fields: %v", err)
	}
}
