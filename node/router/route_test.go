package router

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router/balance"
	"github.com/sovra/sovra/node/router/load"
)

// replica is a fake backend: it fails with err before any chunk, or sends
// chunks and then fails with late (if set).
type replica struct {
	backend.Backend
	name string
	err  error
	late error
	// models are what List answers.
	models []string
	calls  atomic.Int32
	block  chan struct{} // when set, Chat waits for it or ctx
}

func (r *replica) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	r.calls.Add(1)
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.err != nil {
		return r.err
	}
	if err := fn(api.ChatResponse{Message: api.Message{Content: r.name}}); err != nil {
		return err
	}
	if r.late != nil {
		return r.late
	}
	return fn(api.ChatResponse{Done: true, Metrics: api.Metrics{EvalCount: 10, EvalDuration: 100 * time.Millisecond,
		PromptEvalDuration: promptTime(req)}})
}

// promptTime is what the fake replicas take to evaluate a prompt: 5 ms,
// and 20 ms a KiB.
func promptTime(req *api.ChatRequest) time.Duration {
	n := 0
	for _, m := range req.Messages {
		n += len(m.Role) + len(m.Content)
	}
	return 5*time.Millisecond + time.Duration(n)*20*time.Millisecond/1024
}

func (r *replica) List(context.Context) (*api.ListResponse, error) {
	out := &api.ListResponse{}
	for _, m := range r.models {
		out.Models = append(out.Models, api.ListModelResponse{Name: m, Model: m})
	}
	return out, nil
}

func (r *replica) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	asChat := &api.ChatRequest{Model: req.Model, Messages: []api.Message{{Content: req.System + "\x00" + req.Prompt}}}
	return r.Chat(ctx, asChat, func(c api.ChatResponse) error {
		return fn(api.GenerateResponse{Response: c.Message.Content, Done: c.Done, Metrics: c.Metrics})
	})
}

// cluster3 is a state with nodes a, b, c (c labelled US, the others EU)
// and a deployment "chat" of tag m:1 ready on all three.
func cluster3() *state.State {
	s := state.New()
	for id, j := range map[string]string{"a": "EU", "b": "EU", "c": "US"} {
		s.Nodes[id] = &state.Node{ID: id, HTTPAddr: id + ":1", Status: state.NodeReady, Labels: map[string]string{JurisdictionLabel: j}}
		s.Placements["chat\x00"+id] = &state.Placement{Deployment: "chat", Node: id, State: state.PlacementReady}
	}
	s.Deployments["chat"] = &state.Deployment{Name: "chat", Model: "m:1", Replicas: 3}
	return s
}

type rig struct {
	r     *Router
	nodes map[string]*replica
}

func newRig(t *testing.T, self string, cfg Config, reps map[string]*replica) rig {
	t.Helper()
	for id, rep := range reps {
		rep.name = id
	}
	r := New(self, reps[self], fixed{cluster3()}, func(n state.Node) (backend.Backend, error) {
		return reps[n.ID], nil
	}).WithConfig(cfg)
	return rig{r: r, nodes: reps}
}

func (g rig) chat(ctx context.Context, meta Meta) (string, DecisionView, error) {
	ctx, d := WithDecision(WithMeta(ctx, meta))
	var by string
	err := g.r.Chat(ctx, &api.ChatRequest{Model: "chat"}, func(resp api.ChatResponse) error {
		if by == "" {
			by = resp.Message.Content
		}
		return nil
	})
	return by, d.View(), err
}

func fresh() map[string]*replica {
	return map[string]*replica{"a": {}, "b": {}, "c": {}}
}

func TestRetriesBeforeTheFirstByte(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		retried bool
	}{
		{"unreachable", fmt.Errorf("%w: refused", backend.ErrUnavailable), true},
		{"failed", fmt.Errorf("%w: 500", backend.ErrFailed), true},
		{"cut before the first chunk", backend.ErrTruncated, true},
		{"model gone", backend.ErrModelNotFound, true},
		{"busy", backend.ErrOverloaded, true},
		{"bad request", fmt.Errorf("%w: no", backend.ErrBadRequest), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reps := fresh()
			// Every replica but one fails the same way.
			reps["a"].err, reps["b"].err = tc.err, tc.err
			g := newRig(t, "a", Config{Policy: balance.RoundRobin}, reps)
			by, d, err := g.chat(context.Background(), Meta{})
			if !tc.retried {
				if err == nil || !errors.Is(err, backend.ErrBadRequest) || d.Attempts != 1 {
					t.Fatalf("bad request: err %v after %d attempts, want it returned at once", err, d.Attempts)
				}
				return
			}
			if err != nil || by != "c" || d.Node != "c" {
				t.Fatalf("served by %q (decision %+v), err %v; want c", by, d, err)
			}
			failed := int(reps["a"].calls.Load() + reps["b"].calls.Load())
			if failed == 0 || d.Attempts != failed+1 || reps["a"].calls.Load() > 1 || reps["b"].calls.Load() > 1 {
				t.Fatalf("%d attempts, failing replicas called a=%d b=%d; want each at most once, then c",
					d.Attempts, reps["a"].calls.Load(), reps["b"].calls.Load())
			}
		})
	}
}

func TestRetriesAreBounded(t *testing.T) {
	reps := fresh()
	for _, r := range reps {
		r.err = backend.ErrUnavailable
	}
	g := newRig(t, "a", Config{Retries: 1}, reps)
	_, d, err := g.chat(context.Background(), Meta{})
	if !errors.Is(err, backend.ErrUnavailable) || d.Attempts != 2 {
		t.Fatalf("err %v after %d attempts, want unavailable after 2", err, d.Attempts)
	}
	var calls int32
	for _, r := range reps {
		calls += r.calls.Load()
	}
	if calls != 2 {
		t.Fatalf("%d backend calls, want 2", calls)
	}
}

func TestRetryBudgetRunsOut(t *testing.T) {
	reps := fresh()
	for _, r := range reps {
		r.err = backend.ErrFailed
	}
	g := newRig(t, "a", Config{}, reps)
	g.r.budget = retryBudget{} // no tokens earned yet beyond one request's
	_, d, err := g.chat(context.Background(), Meta{})
	if err == nil || d.Attempts != 1 {
		t.Fatalf("with an empty budget: %d attempts, err %v; want 1", d.Attempts, err)
	}
}

// TestUnreachableReplicaRetriedWithoutBudget: a replica that cannot be
// reached (its node just died) is left for another even when the retry
// budget is spent, since the attempt loaded nothing.
func TestUnreachableReplicaRetriedWithoutBudget(t *testing.T) {
	reps := fresh()
	for id, r := range reps {
		if id != "b" {
			r.err = backend.ErrUnavailable
		}
	}
	g := newRig(t, "a", Config{Retries: 2}, reps)
	g.r.budget = retryBudget{}
	by, d, err := g.chat(context.Background(), Meta{})
	if err != nil || by != "b" {
		t.Fatalf("served by %q after %d attempts, err %v; want b", by, d.Attempts, err)
	}
}

func TestNoRetryAfterTheFirstByte(t *testing.T) {
	reps := fresh()
	for _, r := range reps {
		r.late = backend.ErrTruncated
	}
	g := newRig(t, "a", Config{}, reps)
	by, d, err := g.chat(context.Background(), Meta{})
	if !errors.Is(err, backend.ErrTruncated) || by == "" || d.Attempts != 1 {
		t.Fatalf("served by %q, %d attempts, err %v; want the cut reported after one attempt", by, d.Attempts, err)
	}
}

func TestForwardedRequestsAreNotRetriedOrForwarded(t *testing.T) {
	reps := fresh()
	reps["a"].err = backend.ErrUnavailable
	g := newRig(t, "a", Config{}, reps)
	_, d, err := g.chat(Forwarded(context.Background()), Meta{})
	if !errors.Is(err, backend.ErrUnavailable) || d.Attempts != 1 || reps["b"].calls.Load()+reps["c"].calls.Load() != 0 {
		t.Fatalf("forwarded request: err %v, %d attempts, peers called %d times", err, d.Attempts, reps["b"].calls.Load()+reps["c"].calls.Load())
	}
}

func TestResidency(t *testing.T) {
	reps := fresh()
	g := newRig(t, "c", Config{Policy: balance.RoundRobin}, reps) // c is the US node
	for range 6 {
		by, d, err := g.chat(context.Background(), Meta{Jurisdictions: []string{"EU"}})
		if err != nil || (by != "a" && by != "b") || d.Node != by {
			t.Fatalf("EU-only request served by %q (%+v): %v", by, d, err)
		}
	}
	if reps["c"].calls.Load() != 0 {
		t.Fatalf("the US replica served %d EU-only requests", reps["c"].calls.Load())
	}
	_, _, err := g.chat(context.Background(), Meta{Jurisdictions: []string{"CH"}})
	var re *ResidencyError
	if !errors.As(err, &re) || len(re.Elsewhere) != 2 {
		t.Fatalf("CH-only: %v, want a residency error naming EU and US", err)
	}
	// Retries stay inside the allowed set.
	reps["a"].err, reps["b"].err = backend.ErrUnavailable, backend.ErrUnavailable
	if _, _, err := g.chat(context.Background(), Meta{Jurisdictions: []string{"EU"}}); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("EU replicas down: %v, want unavailable (never the US replica)", err)
	}
	if reps["c"].calls.Load() != 0 {
		t.Fatal("a retry went to the US replica")
	}
}

func TestParseJurisdictions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{{"EU", []string{"EU"}, true}, {" eu , ch ", []string{"EU", "CH"}, true}, {"EU;US", nil, false}, {",", nil, false}} {
		got, err := ParseJurisdictions(tc.in)
		if (err == nil) != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseJurisdictions(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestBreakerLeavesAFailingReplicaOut(t *testing.T) {
	reps := fresh()
	reps["b"].err = fmt.Errorf("%w: 500", backend.ErrFailed)
	g := newRig(t, "a", Config{Policy: balance.RoundRobin}, reps)
	for range 30 {
		if _, _, err := g.chat(context.Background(), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := reps["b"].calls.Load(); n != tripFailures {
		t.Fatalf("the failing replica was called %d times, want %d (then its breaker opens)", n, tripFailures)
	}
}

// TestRestingReplicaTriedWhenNothingElseIs: b and c fail until their
// breakers open, then come back (a node restarted) while a fails: a
// request is served by a resting replica rather than failed, and the one
// that served it is no longer resting.
func TestRestingReplicaTriedWhenNothingElseIs(t *testing.T) {
	reps := fresh()
	down := fmt.Errorf("%w: refused", backend.ErrUnavailable)
	reps["b"].err, reps["c"].err = down, down
	g := newRig(t, "a", Config{Policy: balance.RoundRobin}, reps)
	for n := 0; g.r.breakers.closedOrProbing("b", "m:1") || g.r.breakers.closedOrProbing("c", "m:1"); n++ {
		if n > 100 {
			t.Fatal("the breakers of b and c never opened")
		}
		if _, _, err := g.chat(context.Background(), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	reps["b"].err, reps["c"].err, reps["a"].err = nil, nil, down
	by, d, err := g.chat(context.Background(), Meta{})
	if err != nil || (by != "b" && by != "c") {
		t.Fatalf("with a failing and b, c resting: served by %q (%+v), %v; want b or c", by, d, err)
	}
	if !g.r.breakers.closedOrProbing(by, "m:1") {
		t.Fatalf("%s served a request and is still resting", by)
	}
}

func TestCancellationsDoNotTripTheBreaker(t *testing.T) {
	reps := fresh()
	reps["b"].block = make(chan struct{})
	g := newRig(t, "a", Config{Policy: balance.RoundRobin}, reps)
	for range 3 * tripFailures {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, _, err := g.chat(ctx, Meta{}); done <- err }()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	if !g.r.breakers.closedOrProbing("b", "m:1") {
		t.Fatal("client cancellations opened the breaker")
	}
}

func TestPendingCountsUntilTheNextReport(t *testing.T) {
	reps := fresh()
	reps["b"].block = make(chan struct{})
	view := load.NewView(load.ViewConfig{})
	g := newRig(t, "a", Config{View: view}, reps)
	// Only b is allowed (via residency on a state where c is US and a is this node: make a busy instead).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, _ := WithDecision(WithMeta(ctx, Meta{}))
		_ = g.r.forward(ctx, state.Node{ID: "b", HTTPAddr: "b:1"}, plan{tag: "m:1", key: "m:1"}, func(ctx context.Context, to target, p *progress) error {
			return to.be.Chat(ctx, &api.ChatRequest{Model: to.tag}, func(api.ChatResponse) error { return nil })
		}, &progress{})
	}()
	testwait.For(t, 5*time.Second, "the forward to count as pending", func() bool { return view.Load("b", "m:1").Pending == 1 })
	view.Update(load.Report{Node: "b", Seq: 1, Models: map[string]load.Model{"m:1": {Running: 1, Slots: 1}}})
	if l := view.Load("b", "m:1"); l.Pending != 0 || l.Busy() != 1 {
		t.Fatalf("after the report: %+v", l)
	}
	close(reps["b"].block)
	wg.Wait()
}

func TestLocalLoadIsReportedWithMeasuredSpeed(t *testing.T) {
	reps := fresh()
	g := newRig(t, "a", Config{Slots: 3}, reps)
	// Run a few chats here (forwarded marks them local).
	for range 3 {
		if _, _, err := g.chat(Forwarded(context.Background()), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	rep := g.r.Report()
	m, ok := rep.Models["chat:latest"]
	if !ok {
		t.Fatalf("report %+v lacks the model served here", rep)
	}
	if m.Slots != 3 || m.TokensPerSec != 100 || m.OutTokens != 10 {
		t.Fatalf("report %+v, want 3 slots, 100 tokens/s, 10 tokens", m)
	}
	if rep.Node != "a" || rep.Seq == 0 {
		t.Fatalf("report header %+v", rep)
	}
}

// TestJunkModelNamesDoNotDisplaceRealOnes sends 1,000 model names that
// nothing serves, then asks for a deployment and for a model of the local
// Ollama: each keeps an admission queue and a metric label of its own,
// and the junk shares one bucket.
func TestJunkModelNamesDoNotDisplaceRealOnes(t *testing.T) {
	reg := prometheus.NewRegistry()
	reps := fresh()
	s := cluster3()
	s.Placements["chat\x00b"].State = state.PlacementPulling
	s.Placements["chat\x00c"].State = state.PlacementPulling
	reps["a"].models = []string{"local-only:7b"}
	reps["a"].name = "a"
	r := New("a", reps["a"], fixed{s}, func(n state.Node) (backend.Backend, error) { return reps[n.ID], nil }).
		WithConfig(Config{Registerer: reg, ServeUndeployed: true})
	ask := func(model string) {
		t.Helper()
		if err := r.Chat(context.Background(), &api.ChatRequest{Model: model}, func(api.ChatResponse) error { return nil }); err != nil {
			t.Fatalf("chat %q: %v", model, err)
		}
	}
	for i := range 1000 {
		ask(fmt.Sprintf("junk-%d", i))
	}
	ask("chat")
	ask("local-only:7b")
	queues := slices.Sorted(maps.Keys(r.queues.Stats()))
	if want := []string{"", "local-only:7b", "m:1"}; !slices.Equal(queues, want) {
		t.Errorf("admission queues %q, want %q (the junk sharing \"\")", queues, want)
	}
	labels := modelLabels(t, reg)
	if want := []string{otherLabel, "local-only:7b", "m:1"}; !slices.Equal(labels, want) {
		t.Errorf("model labels %q, want %q", labels, want)
	}
}

// modelLabels are the distinct values of the model label in reg.
func modelLabels(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func TestResidencyWhileTheAllowedReplicaIsNotReady(t *testing.T) {
	s := cluster3()
	s.Placements["chat\x00a"].State = state.PlacementLoading
	s.Nodes["b"].Status = state.NodeDown
	reps := fresh()
	r := New("c", reps["c"], fixed{s}, func(n state.Node) (backend.Backend, error) { return reps[n.ID], nil })
	err := r.Chat(WithMeta(context.Background(), Meta{Jurisdictions: []string{"EU"}}), &api.ChatRequest{Model: "chat"}, func(api.ChatResponse) error { return nil })
	var re *ResidencyError
	if !errors.As(err, &re) || !re.NotReady {
		t.Fatalf("EU replicas loading or down: %v, want a residency error that says they are not ready", err)
	}
	if reps["c"].calls.Load() != 0 {
		t.Fatal("the US replica served an EU-only request")
	}
	err = r.Chat(WithMeta(context.Background(), Meta{Jurisdictions: []string{"CH"}}), &api.ChatRequest{Model: "chat"}, func(api.ChatResponse) error { return nil })
	if !errors.As(err, &re) || re.NotReady {
		t.Fatalf("no replica in CH at all: %v, want a residency error that is not temporary", err)
	}
}

func TestReplicasShowWhatRoutingSees(t *testing.T) {
	reps := fresh()
	reps["b"].err = fmt.Errorf("%w: 500", backend.ErrFailed)
	view := load.NewView(load.ViewConfig{})
	view.Update(load.Report{Node: "c", Seq: 1, Models: map[string]load.Model{"m:1": {Running: 2, Queued: 1, Slots: 4, TokensPerSec: 50}}})
	g := newRig(t, "a", Config{Policy: balance.RoundRobin, View: view}, reps)
	for range 9 {
		_, _, _ = g.chat(context.Background(), Meta{})
	}
	got := g.r.Replicas()
	if len(got) != 3 {
		t.Fatalf("%d replicas, want 3: %+v", len(got), got)
	}
	a, b, c := got[0], got[1], got[2]
	if a.Node != "a" || !a.Local || a.Health != "fresh" || a.Slots != 1 || a.TokensPerSec != 100 {
		t.Errorf("local replica %+v", a)
	}
	if b.Node != "b" || b.Breaker != "open" {
		t.Errorf("failing replica %+v, want its breaker open", b)
	}
	if c.Node != "c" || c.Running != 2 || c.Queued != 1 || c.Slots != 4 || c.Health != "fresh" || c.Breaker != "closed" {
		t.Errorf("reported replica %+v", c)
	}
	if g.r.PolicyName() != "round-robin" {
		t.Errorf("policy %q", g.r.PolicyName())
	}
}

func TestRoutingMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reps := fresh()
	reps["b"].err = fmt.Errorf("%w: 500", backend.ErrFailed)
	g := newRig(t, "a", Config{Policy: balance.RoundRobin, Registerer: reg}, reps)
	for range 6 {
		if _, _, err := g.chat(context.Background(), Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			got[f.GetName()] += v
		}
	}
	for name, want := range map[string]float64{
		"sovra_routing_decisions_total": 6 + float64(reps["b"].calls.Load()), // one per attempt
		"sovra_routing_retries_total":   float64(reps["b"].calls.Load()),
		"sovra_breaker_trips_total":     1,
		"sovra_tokens_per_second":       100,
		"sovra_slots":                   1,
		"sovra_running_requests":        0,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if got["sovra_routing_forwards_total"] == 0 || got["sovra_queue_wait_seconds"] == 0 {
		t.Errorf("forwards %v, queue waits %v: want both counted", got["sovra_routing_forwards_total"], got["sovra_queue_wait_seconds"])
	}
}

// TestLocalFailuresAskForARecheck checks that a request failing on this
// node's Ollama through the replica's fault asks the node to re-check its
// Ollama, and that nothing else does.
func TestLocalFailuresAskForARecheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b *replica // a is this node
		want int32    // rechecks asked by 3 requests
	}{
		{"local failure", &replica{err: fmt.Errorf("%w: 500", backend.ErrFailed)}, &replica{}, 3},
		{"local Ollama unreachable", &replica{err: backend.ErrUnavailable}, &replica{}, 3},
		{"model gone from the local Ollama", &replica{err: backend.ErrModelNotFound}, &replica{}, 3},
		{"local stream cut", &replica{late: backend.ErrTruncated}, &replica{}, 3},
		{"bad request", &replica{err: backend.ErrBadRequest}, &replica{}, 0},
		{"local Ollama busy", &replica{err: backend.ErrOverloaded}, &replica{}, 0},
		{"success", &replica{}, &replica{}, 0},
		{"peer failure", &replica{}, &replica{err: fmt.Errorf("%w: 500", backend.ErrFailed)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rechecks atomic.Int32
			reps := map[string]*replica{"a": tc.a, "b": tc.b, "c": {}}
			g := newRig(t, "a", Config{Policy: balance.RoundRobin, LocalFailed: func() { rechecks.Add(1) }}, reps)
			for range 3 {
				ctx := context.Background()
				if tc.b.err == nil {
					ctx = Forwarded(ctx) // served here: no retry elsewhere
				}
				_, _, _ = g.chat(ctx, Meta{})
			}
			if got := rechecks.Load(); got != tc.want {
				t.Fatalf("%d rechecks asked, want %d", got, tc.want)
			}
			if tc.b.err != nil && tc.b.calls.Load() == 0 {
				t.Fatal("the failing peer was never tried")
			}
		})
	}
}

func TestGeneratePrefixKeysFollowThePrompt(t *testing.T) {
	long := strings.Repeat("few-shot example. ", 100) // 1800 bytes
	keys := func(system, prompt string) []uint64 {
		k, _, _ := generatePrefix(&api.GenerateRequest{System: system, Prompt: prompt})
		return k
	}
	base := keys("be brief", long)
	if want := (len("be brief") + 1 + len(long)) / promptChunk; len(base) != want {
		t.Fatalf("%d keys, want one per whole chunk (%d)", len(base), want)
	}
	extended := keys("be brief", long+strings.Repeat("next turn ", 60))
	if len(extended) <= len(base) || !slices.Equal(extended[:len(base)], base) {
		t.Fatalf("an extended prompt does not start with the earlier prompt's keys")
	}
	if other := keys("be verbose", long); other[0] == base[0] {
		t.Fatal("another system prompt shares the keys")
	}
	if short := keys("", "hello"); len(short) != 0 {
		t.Fatalf("a prompt shorter than a chunk has %d keys", len(short))
	}
}

// TestCompletionFollowUpGoesToItsReplica checks that a completion whose
// prompt extends one a peer served goes to that peer, for the prefill it
// saves there, though the local replica is as idle and costs no hop: the
// completion's prefix keys and the bytes they cover reach the balancer,
// and this node's measured prefill cost prices what the peer's cache
// holds.
func TestCompletionFollowUpGoesToItsReplica(t *testing.T) {
	g := newRig(t, "a", Config{}, fresh())
	for _, n := range []string{"b", "c"} {
		g.r.cfg.View.Update(load.Report{Node: n, Seq: 1, Models: map[string]load.Model{"m:1": {Slots: 1}}})
	}
	// This node has measured 30 ms to the first token, 25 ms of it for
	// a KiB of prompt.
	for range 5 {
		g.r.tracker.Observe("m:1", load.Sample{TTFT: 30 * time.Millisecond, OutTokens: 10, DecodeTime: 100 * time.Millisecond,
			PromptBytes: 1024, PromptTime: 25 * time.Millisecond})
	}
	for i := range 20 {
		prompt := fmt.Sprintf("conversation %d: %s", i, strings.Repeat("earlier turns. ", 80))
		keys, covered, total := generatePrefix(&api.GenerateRequest{Prompt: prompt})
		g.r.bal.Served(balance.Request{Model: "m:1", Prefix: keys, PrefixBytes: covered, PromptBytes: total}, "b")
		ctx, d := WithDecision(WithMeta(context.Background(), Meta{}))
		err := g.r.Generate(ctx, &api.GenerateRequest{Model: "chat", Prompt: prompt + " and the next turn"}, func(api.GenerateResponse) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if v := d.View(); v.Node != "b" || v.Reason != balance.ReasonAffinity {
			t.Fatalf("conversation %d: follow-up on %s (%s), want b (affinity)", i, v.Node, v.Reason)
		}
	}
}
