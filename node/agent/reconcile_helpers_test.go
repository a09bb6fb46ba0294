package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/synchttp"
	"github.com/sovra/sovra/node/agent"
	"github.com/sovra/sovra/node/backend/ollama"
)

// waitTimeout bounds every wait of these tests; the conditions normally
// hold within a second.
const waitTimeout = 30 * time.Second

// fakeCluster applies commands to a local state machine, as a one-node
// cluster would, so the reconciler sees its own reports. It logs the
// reports and can refuse the next ones.
type fakeCluster struct {
	m *state.Machine

	mu      sync.Mutex
	index   uint64
	reports []state.ReportPlacement
	refuse  int // report applies still to refuse
	refused int
}

var errNoLeader = errors.New("no leader")

func (f *fakeCluster) Apply(_ context.Context, cmd state.Command) (state.Outcome, error) {
	entry, err := state.Encode(cmd)
	if err != nil {
		return state.Outcome{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if cmd.Type == state.TypeReportPlacement {
		if f.refuse > 0 {
			f.refuse--
			f.refused++
			return state.Outcome{}, errNoLeader
		}
		f.reports = append(f.reports, cmd.Body.(state.ReportPlacement))
	}
	f.index++
	out := f.m.Apply(f.index, entry)
	return out, out.Err()
}

// reportsOf returns the reports committed for a deployment, in order.
func (f *fakeCluster) reportsOf(dep string) []state.ReportPlacement {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []state.ReportPlacement
	for _, r := range f.reports {
		if r.Deployment == dep {
			out = append(out, r)
		}
	}
	return out
}

// harness is a simulated Ollama, a one-node "cluster" with members n1 and
// n2, and a reconciler for n1.
type harness struct {
	t      *testing.T
	sim    *ollamasim.Server
	tr     *synchttp.Transport
	ollama *api.Client // straight to the simulated Ollama, for the test's own calls
	fc     *fakeCluster
	rec    *agent.Reconciler

	mu        sync.Mutex
	diskLists [][]string
}

func newHarness(t *testing.T, cfg ollamasim.Config) *harness {
	t.Helper()
	sim := ollamasim.StartTest(t, cfg)
	h := &harness{t: t, sim: sim, fc: &fakeCluster{m: state.NewMachine()}}
	h.connect(sim.URL())
	for _, id := range []string{"n1", "n2"} {
		h.apply(state.TypeRegisterNode, state.RegisterNode{Node: state.Node{ID: id}})
	}
	return h
}

// connect builds the reconciler's backend and the test's client over one
// transport whose idle connections are closed when the test ends.
func (h *harness) connect(base string) {
	h.tr = ollama.NewTransport()
	h.t.Cleanup(h.tr.CloseIdleConnections)
	hc := &http.Client{Transport: h.tr}
	be, err := ollama.New(base, hc)
	if err != nil {
		h.t.Fatal(err)
	}
	u, _ := url.Parse(base)
	h.ollama = api.NewClient(u, hc)
	h.rec = &agent.Reconciler{
		NodeID: "n1", State: h.fc.m, Reporter: h.fc, Backend: be,
		Logger: zaptest.NewLogger(h.t), Interval: 50 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		OnModels: h.onModels,
	}
}

func (h *harness) onModels(models []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.diskLists = append(h.diskLists, models)
}

// lastDiskList is the last list of models on disk the reconciler gave.
func (h *harness) lastDiskList() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.diskLists) == 0 {
		return nil
	}
	return h.diskLists[len(h.diskLists)-1]
}

// run starts the reconciler until the test ends.
func (h *harness) run() { h.runAs("n1") }

// runAs starts a copy of the reconciler for another node until the test
// ends.
func (h *harness) runAs(node string) {
	rec := *h.rec
	rec.NodeID = node
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	})
}

func (h *harness) apply(typ state.Type, body any) {
	h.t.Helper()
	if _, err := h.fc.Apply(context.Background(), state.Command{Type: typ, Body: body}); err != nil {
		h.t.Fatalf("apply %v: %v", typ, err)
	}
}

// deploy creates a deployment of model and places it on nodes.
func (h *harness) deploy(name, model string, nodes ...string) {
	h.t.Helper()
	h.apply(state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: name, Model: model, Replicas: len(nodes)}})
	h.place(name, nodes...)
}

// place replaces the nodes a deployment is placed on.
func (h *harness) place(name string, nodes ...string) {
	h.t.Helper()
	h.apply(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{name: nodes}})
}

// waitFor waits until cond holds for the state.
func (h *harness) waitFor(what string, cond func(*state.State) bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		changed := h.fc.m.Changed()
		ok := false
		h.fc.m.Read(func(s *state.State) { ok = cond(s) })
		if ok {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			h.t.Fatalf("timed out waiting for %s; placements: %s", what, h.placements())
		}
	}
}

// waitState waits until the placement of dep on n1 is in st and returns it.
func (h *harness) waitState(dep string, st state.PlacementState) state.Placement {
	h.t.Helper()
	return h.waitStateOn(dep, "n1", st)
}

// waitStateOn waits until the placement of dep on node is in st.
func (h *harness) waitStateOn(dep, node string, st state.PlacementState) state.Placement {
	h.t.Helper()
	var got state.Placement
	h.waitFor(fmt.Sprintf("%s on %s to be %s", dep, node, st), func(s *state.State) bool {
		p := s.Placement(dep, node)
		if p != nil && p.State == st {
			got = *p
			return true
		}
		return false
	})
	return got
}

func (h *harness) placements() string {
	var parts []string
	h.fc.m.Read(func(s *state.State) {
		for _, p := range s.Placements {
			parts = append(parts, fmt.Sprintf("%s/%s=%s(%q %.2f)", p.Deployment, p.Node, p.State, p.Reason, p.Progress))
		}
	})
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// waitSim waits until cond holds for the simulated Ollama's stats.
func (h *harness) waitSim(what string, cond func(ollamasim.Stats) bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.sim.WaitFor(ctx, cond); err != nil {
		h.t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// poll waits until cond holds, checking it every few milliseconds; for
// conditions nothing signals, such as what /api/ps says.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// running returns the model's entry in /api/ps, or false.
func running(t *testing.T, c *api.Client, model string) (api.ProcessModelResponse, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps, err := c.ListRunning(ctx)
	if err != nil {
		t.Logf("ps: %v", err)
		return api.ProcessModelResponse{}, false
	}
	for _, m := range ps.Models {
		if m.Model == model || m.Name == model {
			return m, true
		}
	}
	return api.ProcessModelResponse{}, false
}

// pinned reports whether /api/ps shows the model loaded for good.
func pinned(t *testing.T, c *api.Client, model string) bool {
	t.Helper()
	m, ok := running(t, c, model)
	return ok && m.ExpiresAt.After(time.Now().Add(agent.PinnedHorizon))
}

// states is the sequence of states in reports, runs of one state folded.
func states(reports []state.ReportPlacement) []state.PlacementState {
	var out []state.PlacementState
	for _, r := range reports {
		if len(out) == 0 || out[len(out)-1] != r.State {
			out = append(out, r.State)
		}
	}
	return out
}

// noRepeats fails the test when two reports in a row are the same.
func noRepeats(t *testing.T, reports []state.ReportPlacement) {
	t.Helper()
	for i := 1; i < len(reports); i++ {
		if reports[i] == reports[i-1] {
			t.Errorf("report %d repeats the one before: %+v", i, reports[i])
		}
	}
}

// requests counts the simulated Ollama's logged requests to an endpoint
// for a model that match ok (nil: all).
func (h *harness) requests(endpoint, model string, ok func(ollamasim.RequestRecord) bool) int {
	n := 0
	for _, r := range h.sim.Requests() {
		if r.Endpoint == endpoint && r.Model == model && (ok == nil || ok(r)) {
			n++
		}
	}
	return n
}

// fakeClock is a Clock moved by hand. After's channels fire when Advance
// passes their deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	changed chan struct{}
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Advance moves the clock on by d and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// await waits until a timer due exactly d from now is pending: the wait
// the loop chose.
func (c *fakeClock) await(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		c.mu.Lock()
		found := false
		for _, w := range c.waiters {
			found = found || w.at.Sub(c.now) == d
		}
		changed := c.changed
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			c.mu.Lock()
			pending := make([]time.Duration, 0, len(c.waiters))
			for _, w := range c.waiters {
				pending = append(pending, w.at.Sub(c.now))
			}
			c.mu.Unlock()
			t.Fatalf("no timer of %v was set (pending: %v)", d, pending)
		}
	}
}
