package agent_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/node/agent"
)

const (
	pullModel  = "qwen3:0.6b"  // in the simulated registry, not on disk
	diskModel  = "llama3.2:1b" // on the simulated disk
	otherModel = "llama3.1:8b" // in the simulated registry
)

func TestReconcilerPullsLoadsAndPins(t *testing.T) {
	h := newHarness(t, ollamasim.Config{PullDuration: time.Second, LoadDuration: 300 * time.Millisecond})
	h.run()
	h.deploy("d1", pullModel, "n1")
	h.waitState("d1", state.PlacementReady)

	reports := h.fc.reportsOf("d1")
	if got, want := states(reports), []state.PlacementState{state.PlacementPulling, state.PlacementLoading, state.PlacementReady}; !slices.Equal(got, want) {
		t.Fatalf("states = %v, want %v (reports %+v)", got, want, reports)
	}
	noRepeats(t, reports)
	var progress []float64
	var done []int64
	for _, r := range reports {
		if r.State == state.PlacementPulling {
			progress, done = append(progress, r.Progress), append(done, r.BytesDone)
			if r.BytesDone > r.BytesTotal || (r.Progress > 0 && r.BytesTotal <= 0) {
				t.Errorf("report %+v: bytes %d of %d", r, r.BytesDone, r.BytesTotal)
			}
		} else if r.Progress != 0 || r.Reason != "" || r.BytesDone != 0 || r.BytesTotal != 0 {
			t.Errorf("report %+v carries progress or a reason", r)
		}
	}
	if len(progress) < 4 || !slices.IsSorted(progress) || progress[len(progress)-1] > 1 {
		t.Errorf("pull progress = %v, want at least 4 reports increasing within 0..1", progress)
	}
	if !slices.IsSorted(done) || done[len(done)-1] == 0 {
		t.Errorf("pulled bytes = %v, want them growing", done)
	}
	st := h.sim.Stats().Model(pullModel)
	if !st.Present || !st.Loaded {
		t.Errorf("simulated Ollama: %s present %v, loaded %v; want both", pullModel, st.Present, st.Loaded)
	}
	if !pinned(t, h.ollama, pullModel) {
		t.Errorf("%s is not pinned in /api/ps", pullModel)
	}
	if n := h.requests("/api/pull", pullModel, nil); n != 1 {
		t.Errorf("%d pulls, want 1", n)
	}
	poll(t, "the models on disk to include the pulled one", func() bool {
		return slices.Contains(h.lastDiskList(), pullModel)
	})
	if got := h.lastDiskList(); !slices.IsSorted(got) || !slices.Contains(got, diskModel) {
		t.Errorf("models on disk = %v, want sorted and with %s", got, diskModel)
	}
}

func TestReconcilerServesOnlyItsPlacements(t *testing.T) {
	h := newHarness(t, ollamasim.Config{PullDuration: 200 * time.Millisecond})
	h.run()
	h.deploy("d1", pullModel, "n1")
	h.deploy("d2", diskModel, "n1", "n2")
	h.deploy("d3", otherModel, "n2")
	h.deploy("d4", pullModel, "n1") // the same model as d1
	for _, dep := range []string{"d1", "d2", "d4"} {
		h.waitState(dep, state.PlacementReady)
	}
	for _, m := range []string{pullModel, diskModel} {
		if !pinned(t, h.ollama, m) {
			t.Errorf("%s is not pinned", m)
		}
	}
	if n := h.requests("/api/pull", pullModel, nil); n != 1 {
		t.Errorf("%s pulled %d times for two deployments, want once", pullModel, n)
	}
	if n := h.requests("/api/pull", otherModel, nil); n != 0 || h.sim.Stats().Model(otherModel).Present {
		t.Errorf("the model placed on n2 only was pulled on n1 (%d pulls)", n)
	}
	if n := len(h.fc.reportsOf("d3")); n != 0 {
		t.Errorf("%d reports for a deployment not placed on n1", n)
	}
	h.fc.m.Read(func(s *state.State) {
		for _, dep := range []string{"d2", "d3"} {
			if p := s.Placement(dep, "n2"); p == nil || p.State != state.PlacementPending {
				t.Errorf("placement of %s on n2 = %+v, want untouched", dep, p)
			}
		}
	})
}

func TestReconcilerUnloadsRemovedPlacements(t *testing.T) {
	models := ollamasim.DefaultModels()
	models[2].Loaded = true // nomic-embed-text: loaded by someone else, not pinned
	h := newHarness(t, ollamasim.Config{Models: models, PullDuration: 10 * time.Second})
	h.run()
	h.deploy("d1", diskModel, "n1")
	h.waitState("d1", state.PlacementReady)

	h.place("d1")
	h.waitSim("the unplaced model to be unloaded", func(s ollamasim.Stats) bool { return !s.Model(diskModel).Loaded })
	if !h.sim.Stats().Model(diskModel).Present {
		t.Errorf("%s was deleted from disk; it should stay as a cache", diskModel)
	}
	if !h.sim.Stats().Model(models[2].Name).Loaded {
		t.Errorf("%s, loaded by someone else and never placed, was unloaded", models[2].Name)
	}

	// A placement removed while its model is pulling stops the pull.
	h.deploy("d2", pullModel, "n1")
	h.waitFor("d2 to make progress", func(s *state.State) bool {
		p := s.Placement("d2", "n1")
		return p != nil && p.State == state.PlacementPulling && p.Progress > 0
	})
	h.place("d2")
	h.waitSim("the pull to end", func(s ollamasim.Stats) bool { return s.InFlight == 0 && s.Cancelled > 0 })
	if n := h.requests("/api/pull", pullModel, func(r ollamasim.RequestRecord) bool { return r.Outcome == ollamasim.OutcomeCancelled }); n != 1 {
		t.Errorf("%d cancelled pulls, want 1", n)
	}
	if h.sim.Stats().Model(pullModel).Present {
		t.Errorf("%s is present after its pull was stopped", pullModel)
	}
}

func TestReconcilerUnloadsLeftoverPins(t *testing.T) {
	// Ollama comes with two models pinned, as an earlier run of this node
	// leaves them: one no node serves, one placed on n2.
	models := ollamasim.DefaultModels()
	models[0].Loaded, models[1].Loaded = true, true
	h := newHarness(t, ollamasim.Config{Models: models, KeepAlive: -1})
	h.deploy("elsewhere", models[1].Name, "n2")
	h.run()
	h.waitSim("the leftover pin to be unloaded", func(s ollamasim.Stats) bool { return !s.Model(models[0].Name).Loaded })
	if !pinned(t, h.ollama, models[1].Name) {
		t.Errorf("%s, placed on n2, was unloaded by n1", models[1].Name)
	}
}

func TestReconcilerSharesOllamaWithAnotherNode(t *testing.T) {
	const n2Model = "deepseek-r1:1.5b"
	h := newHarness(t, ollamasim.Config{})
	h.run()
	h.runAs("n2")
	h.deploy("d1", diskModel, "n1")
	h.deploy("d2", n2Model, "n2")
	h.waitState("d1", state.PlacementReady)
	h.waitStateOn("d2", "n2", state.PlacementReady)
	h.place("d1")
	h.waitSim("n1's model to be unloaded", func(s ollamasim.Stats) bool { return !s.Model(diskModel).Loaded })
	if st := h.sim.Stats().Model(n2Model); !st.Loaded || st.Loads != 1 {
		t.Errorf("n2's model: loaded %v after %d loads, want loaded once and left alone", st.Loaded, st.Loads)
	}
}

func TestReconcilerDeletesUnplacedWhenAsked(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	h.rec.DeleteUnplaced = true
	h.run()
	h.deploy("d1", diskModel, "n1")
	h.waitState("d1", state.PlacementReady)
	h.place("d1")
	h.waitSim("the unplaced model to be deleted", func(s ollamasim.Stats) bool { return !s.Model(diskModel).Present })
	if !h.sim.Stats().Model("deepseek-r1:1.5b").Present {
		t.Error("a model never placed here was deleted")
	}
	poll(t, "the models on disk to drop the deleted one", func() bool {
		list := h.lastDiskList()
		return len(list) > 0 && !slices.Contains(list, diskModel)
	})
}

func TestReconcilerRetriesFailures(t *testing.T) {
	cases := []struct {
		name   string
		model  string
		reason string
		fault  func(h *harness)
		clear  func(h *harness)
	}{
		{
			name: "pull of a model the registry lacks", model: "mistral:7b", reason: "file does not exist",
			clear: func(h *harness) { h.sim.AddModel(ollamasim.ModelConfig{Name: "mistral:7b"}) },
		},
		{
			name: "ollama answers 500", model: diskModel, reason: ollamasim.DefaultFailMessage,
			fault: func(h *harness) { h.sim.SetFail(true) },
			clear: func(h *harness) { h.sim.SetFail(false) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ollamasim.Config{})
			if tc.fault != nil {
				tc.fault(h)
			}
			h.run()
			h.deploy("d1", tc.model, "n1")
			p := h.waitState("d1", state.PlacementFailed)
			if !strings.Contains(p.Reason, tc.reason) {
				t.Errorf("reason = %q, want it to mention %q", p.Reason, tc.reason)
			}
			tc.clear(h)
			h.waitState("d1", state.PlacementReady)
			if !pinned(t, h.ollama, tc.model) {
				t.Errorf("%s is not pinned after the retry", tc.model)
			}
			noRepeats(t, h.fc.reportsOf("d1"))
		})
	}
}

func TestReconcilerRetriesInterruptedPull(t *testing.T) {
	h := newHarness(t, ollamasim.Config{PullDuration: 2 * time.Second})
	h.run()
	h.deploy("d1", pullModel, "n1")
	h.waitFor("d1 to make progress", func(s *state.State) bool {
		p := s.Placement("d1", "n1")
		return p != nil && p.State == state.PlacementPulling && p.Progress > 0
	})
	if err := h.sim.SetRefuse(true); err != nil {
		t.Fatal(err)
	}
	if p := h.waitState("d1", state.PlacementFailed); p.Reason == "" {
		t.Error("failed without a reason")
	}
	if err := h.sim.SetRefuse(false); err != nil {
		t.Fatal(err)
	}
	h.waitState("d1", state.PlacementReady)
	if n := h.requests("/api/pull", pullModel, func(r ollamasim.RequestRecord) bool { return r.Outcome == ollamasim.OutcomeOK }); n != 1 {
		t.Errorf("%d complete pulls, want 1", n)
	}
	if !pinned(t, h.ollama, pullModel) {
		t.Errorf("%s is not pinned", pullModel)
	}
}

func TestReconcilerBacksOffExponentially(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	clock := newFakeClock()
	h.rec.Clock, h.rec.Interval = clock, time.Hour
	h.rec.RetryMin, h.rec.RetryMax = 10*time.Millisecond, 40*time.Millisecond
	h.sim.SetFail(true)
	failedLoads := func() int {
		return h.requests("/api/generate", diskModel, func(r ollamasim.RequestRecord) bool { return r.Fault == ollamasim.FaultFail })
	}
	h.run()
	h.deploy("d1", diskModel, "n1")

	// expectRetry checks the wait after the n-th failure in a row and lets
	// it pass.
	expectRetry := func(n int, want time.Duration) {
		t.Helper()
		h.waitSim("the failed load", func(ollamasim.Stats) bool { return failedLoads() == n })
		clock.await(t, want)
		clock.Advance(want)
	}
	for n, want := range []time.Duration{10, 20, 40, 40, 40} {
		expectRetry(n+1, want*time.Millisecond)
	}
	h.waitSim("the sixth load", func(ollamasim.Stats) bool { return failedLoads() == 6 })
	h.sim.SetFail(false)
	clock.await(t, 40*time.Millisecond)
	clock.Advance(40 * time.Millisecond)
	h.waitState("d1", state.PlacementReady)

	// A success resets the backoff: Ollama loses the model, the next
	// resync finds out, and the first failure waits RetryMin again.
	h.sim.SetFail(true)
	unload(t, h.ollama, diskModel)
	clock.Advance(time.Hour)
	h.waitSim("the failed reload", func(ollamasim.Stats) bool { return failedLoads() == 7 })
	// The first failure since a success waits RetryMin again.
	clock.await(t, 10*time.Millisecond)
}

// unload unloads a model behind the reconciler's back.
func unload(t *testing.T, c *api.Client, model string) {
	t.Helper()
	err := c.Generate(context.Background(), &api.GenerateRequest{Model: model, KeepAlive: &api.Duration{}},
		func(api.GenerateResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func TestReconcilerReloadsAfterOllamaLosesModels(t *testing.T) {
	t.Run("unloaded behind its back", func(t *testing.T) {
		h := newHarness(t, ollamasim.Config{LoadDuration: 200 * time.Millisecond})
		h.run()
		h.deploy("d1", diskModel, "n1")
		h.waitState("d1", state.PlacementReady)
		unload(t, h.ollama, diskModel)
		h.waitState("d1", state.PlacementLoading)
		h.waitState("d1", state.PlacementReady)
		if !pinned(t, h.ollama, diskModel) || h.sim.Stats().Model(diskModel).Loads != 2 {
			t.Errorf("%s not pinned after the reload, or loads = %d, want 2", diskModel, h.sim.Stats().Model(diskModel).Loads)
		}
	})
	t.Run("restarted", func(t *testing.T) {
		h := newHarness(t, ollamasim.Config{LoadDuration: 200 * time.Millisecond})
		h.run()
		h.deploy("d1", diskModel, "n1")
		h.waitState("d1", state.PlacementReady)
		addr := h.sim.Addr()
		if err := h.sim.Close(); err != nil {
			t.Fatal(err)
		}
		if p := h.waitState("d1", state.PlacementFailed); !strings.HasPrefix(p.Reason, "ollama: ") {
			t.Errorf("reason = %q, want it to say Ollama does not answer", p.Reason)
		}
		// The new process has the model on disk but not in memory.
		restarted := ollamasim.New(ollamasim.Config{LoadDuration: 200 * time.Millisecond})
		if _, err := restarted.Start(addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = restarted.Close() })
		h.waitState("d1", state.PlacementLoading)
		h.waitState("d1", state.PlacementReady)
		if !pinned(t, h.ollama, diskModel) {
			t.Errorf("%s not pinned after the restart", diskModel)
		}
	})
}

func TestReconcilerPinsAgainAfterRequestKeepAlive(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	h.run()
	h.deploy("d1", diskModel, "n1")
	h.waitState("d1", state.PlacementReady)
	before := len(h.fc.reportsOf("d1"))

	// A request with its own keep_alive replaces the pin, as in Ollama.
	err := h.ollama.Generate(context.Background(), &api.GenerateRequest{Model: diskModel, Prompt: "hi", KeepAlive: &api.Duration{Duration: time.Minute}},
		func(api.GenerateResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if pinned(t, h.ollama, diskModel) {
		t.Fatal("the request did not change the keep-alive; the test proves nothing")
	}
	poll(t, "the model to be pinned again", func() bool { return pinned(t, h.ollama, diskModel) })
	if after := h.fc.reportsOf("d1"); len(after) != before {
		t.Errorf("reports while pinning again: %+v, want none (it stays ready)", after[before:])
	}
}

func TestReconcilerThrottlesProgress(t *testing.T) {
	h := newHarness(t, ollamasim.Config{PullDuration: time.Second})
	h.rec.ProgressStep, h.rec.ProgressEvery = 0.25, time.Hour
	h.run()
	h.deploy("d1", pullModel, "n1")
	h.waitState("d1", state.PlacementReady)
	var progress []float64
	for _, r := range h.fc.reportsOf("d1") {
		if r.State == state.PlacementPulling {
			progress = append(progress, r.Progress)
		}
	}
	if len(progress) < 3 || len(progress) > 5 {
		t.Errorf("pull progress reports = %v, want 3 to 5 with a step of 0.25", progress)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i]-progress[i-1] < 0.25 {
			t.Errorf("progress %v then %v: reported a change below the step", progress[i-1], progress[i])
		}
	}
}

func TestReconcilerRetriesReports(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	h.fc.refuse = 3
	h.run()
	h.deploy("d1", diskModel, "n1")
	h.waitState("d1", state.PlacementReady)
	h.fc.mu.Lock()
	defer h.fc.mu.Unlock()
	if h.fc.refused != 3 {
		t.Errorf("%d reports refused, want 3", h.fc.refused)
	}
}

func TestReconcilerLoadsEmbeddingModels(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	h.run()
	h.deploy("d1", "nomic-embed-text", "n1") // listed as nomic-embed-text:latest
	h.waitState("d1", state.PlacementReady)
	if !pinned(t, h.ollama, "nomic-embed-text:latest") {
		t.Error("the embedding model is not pinned")
	}
}

func TestReconcilerWaitsForSync(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	h.deploy("d1", diskModel, "n1")
	calls, early := 0, int64(0)
	synced := make(chan struct{})
	h.rec.Sync = func(context.Context) error {
		calls++
		early += h.sim.Stats().Requests
		if calls < 3 {
			return errors.New("no leader yet")
		}
		close(synced)
		return nil
	}
	h.run()
	h.waitState("d1", state.PlacementReady)
	select {
	case <-synced:
	case <-time.After(waitTimeout):
		t.Fatal("the reconciler served its placement without Sync succeeding")
	}
	if calls != 3 || early != 0 {
		t.Errorf("Sync called %d times (want 3); Ollama saw %d requests before it succeeded (want 0)", calls, early)
	}
}

func TestReconcilerNeedsItsFields(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	full := *h.rec
	cases := []struct {
		name  string
		unset func(r *agent.Reconciler)
	}{
		{"node id", func(r *agent.Reconciler) { r.NodeID = "" }},
		{"state", func(r *agent.Reconciler) { r.State = nil }},
		{"reporter", func(r *agent.Reconciler) { r.Reporter = nil }},
		{"backend", func(r *agent.Reconciler) { r.Backend = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := full
			tc.unset(&r)
			if err := r.Run(context.Background()); err == nil {
				t.Fatal("Run without a " + tc.name + " returned nil")
			}
		})
	}
}

// TestReconcilerRealOllama runs the reconciler against the real Ollama
// with a tiny model created on it, so nothing is pulled.
func TestReconcilerRealOllama(t *testing.T) {
	ollamarig.Require(t)
	rig := ollamarig.Start(t, ollamarig.Options{})
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := rig.CreateTiny(ctx, "tiny:latest"); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, fc: &fakeCluster{m: state.NewMachine()}}
	h.connect(rig.URL)
	h.rec.Interval = 200 * time.Millisecond
	h.apply(state.TypeRegisterNode, state.RegisterNode{Node: state.Node{ID: "n1"}})
	h.run()
	h.deploy("d1", "tiny", "n1")
	h.waitState("d1", state.PlacementReady)
	if got := states(h.fc.reportsOf("d1")); !slices.Equal(got, []state.PlacementState{state.PlacementLoading, state.PlacementReady}) {
		t.Errorf("states = %v, want [loading ready]", got)
	}
	m, ok := running(t, h.ollama, "tiny:latest")
	if !ok || !m.ExpiresAt.After(time.Now().Add(agent.PinnedHorizon)) {
		t.Fatalf("/api/ps shows tiny:latest %v with expires_at %v, want it pinned for good", ok, m.ExpiresAt)
	}
	t.Logf("pinned until %v", m.ExpiresAt)

	h.place("d1")
	poll(t, "tiny:latest to leave /api/ps", func() bool { _, ok := running(t, h.ollama, "tiny:latest"); return !ok })
	list, err := h.ollama.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list.Models, func(m api.ListModelResponse) bool { return m.Model == "tiny:latest" }) {
		t.Error("tiny:latest is no longer on disk")
	}
}

// TestReconcilerRechecksOllamaWhenAsked checks that a recheck looks at
// Ollama RetryMin after the last look, long before the resync is due, and
// that a burst of rechecks costs one look.
func TestReconcilerRechecksOllamaWhenAsked(t *testing.T) {
	h := newHarness(t, ollamasim.Config{})
	clock := newFakeClock()
	recheck := make(chan struct{})
	h.rec.Clock, h.rec.Interval, h.rec.Recheck = clock, time.Hour, recheck
	h.rec.RetryMin, h.rec.RetryMax = 10*time.Millisecond, time.Minute
	listings := func() int { return h.requests("/api/ps", "", nil) }
	ask := func() {
		t.Helper()
		select {
		case recheck <- struct{}{}:
		case <-time.After(waitTimeout):
			t.Fatal("the reconciler takes no recheck")
		}
	}
	h.run()
	h.deploy("d1", diskModel, "n1")
	h.waitState("d1", state.PlacementReady)
	clock.await(t, time.Hour)
	before := listings()

	for range 5 {
		ask()
	}
	clock.await(t, 10*time.Millisecond)
	if got := listings(); got != before {
		t.Fatalf("Ollama listed %d times before the recheck was due", got-before)
	}
	clock.Advance(10 * time.Millisecond)
	h.waitSim("the recheck's listing", func(ollamasim.Stats) bool { return listings() == before+1 })
	// The burst is spent: the next look is the resync.
	clock.await(t, time.Hour-10*time.Millisecond)
	if got := listings(); got != before+1 {
		t.Fatalf("five rechecks listed Ollama %d times, want 1", got-before)
	}

	// Ollama goes away: the next recheck reports the replica failed
	// without waiting for the resync.
	if err := h.sim.Close(); err != nil {
		t.Fatal(err)
	}
	ask()
	clock.await(t, 10*time.Millisecond)
	clock.Advance(10 * time.Millisecond)
	if p := h.waitState("d1", state.PlacementFailed); !strings.HasPrefix(p.Reason, "ollama: ") {
		t.Errorf("reason = %q, want it to say Ollama does not answer", p.Reason)
	}
}
