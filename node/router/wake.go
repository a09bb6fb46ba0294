package router

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// Proposer writes commands to the replicated state (a *cluster.Cluster).
type Proposer interface {
	Apply(ctx context.Context, cmd state.Command) (state.Outcome, error)
}

// WakeConfig lets the router record the use of deployments that may go
// idle and wake idle ones.
type WakeConfig struct {
	// Proposer writes the touches and wakes; nil turns both off.
	Proposer Proposer
	// Wait bounds how long a request for an idle or waking deployment
	// waits for a ready replica before it fails with a *LoadingError.
	// Zero: it does not wait.
	Wait time.Duration
	// Now is the clock of touches and wakes (time.Now).
	Now func() time.Time
	// OnError, when set, hears of touches and wakes that failed.
	OnError func(what, deployment string, err error)
}

// Bounds of how often a node records the use of one deployment: a
// quarter of its idle timeout, at least touchMin and at most touchMax,
// and never more than half the timeout.
const (
	touchMin     = 5 * time.Second
	touchMax     = 60 * time.Second
	proposeLimit = 10 * time.Second
	// loadingRetryAfter is the Retry-After of a request that timed out
	// waiting for a model to load.
	loadingRetryAfter = 5 * time.Second
	// pollEvery is how often a wait rechecks a state source that cannot
	// say when it changed.
	pollEvery = 50 * time.Millisecond
)

// ErrLoading is what a *LoadingError is: the deployment has no ready
// replica yet because it is waking or loading.
var ErrLoading = errors.New("model is loading")

// LoadingError reports a request that gave up waiting for a deployment
// to become ready. Progress says how far the loading got.
type LoadingError struct {
	Deployment string
	Progress   string
	RetryAfter time.Duration
}

func (e *LoadingError) Error() string {
	return fmt.Sprintf("model %s is loading: %s", e.Deployment, e.Progress)
}

// Is makes errors.Is(err, ErrLoading) hold.
func (e *LoadingError) Is(target error) bool { return target == ErrLoading }

// changeSource is a state source that says when it changed
// (*state.Machine does).
type changeSource interface {
	Changed() <-chan struct{}
}

// waker is the router's idle bookkeeping.
type waker struct {
	cfg    WakeConfig
	bg     context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	touched map[string]time.Time // deployment -> last touch sent
	waking  map[string]bool      // deployment -> wake in flight
}

// WithWake turns on use recording and waking; call it before the router
// serves. Close stops what it started.
func (r *Router) WithWake(cfg WakeConfig) *Router {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	bg, cancel := context.WithCancel(context.Background())
	r.wake = &waker{cfg: cfg, bg: bg, cancel: cancel, touched: map[string]time.Time{}, waking: map[string]bool{}}
	return r
}

// Close cancels the touches and wakes in flight and waits for them.
func (r *Router) Close() {
	if r != nil && r.wake != nil {
		r.wake.cancel()
		r.wake.wg.Wait()
	}
}

// idleInfo is what the router reads about the deployments a request
// names that may go idle.
type idleInfo struct {
	name     string
	timeout  time.Duration
	idle     bool
	progress string
}

func touchInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/4, touchMin), touchMax, timeout/2)
}

// async runs fn in the background, bounded by proposeLimit and by Close.
func (w *waker) async(fn func(ctx context.Context)) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithTimeout(w.bg, proposeLimit)
		defer cancel()
		fn(ctx)
	}()
}

func (w *waker) failed(what, name string, err error) {
	if w.cfg.OnError != nil && w.bg.Err() == nil {
		w.cfg.OnError(what, name, err)
	}
}

// touch records a use of d unless this node did within its touch
// interval. It never blocks.
func (w *waker) touch(d idleInfo) {
	now := w.cfg.Now()
	w.mu.Lock()
	if last, ok := w.touched[d.name]; ok && now.Sub(last) < touchInterval(d.timeout) {
		w.mu.Unlock()
		return
	}
	w.touched[d.name] = now
	w.mu.Unlock()
	w.async(func(ctx context.Context) {
		_, err := w.cfg.Proposer.Apply(ctx, state.Command{Type: state.TypeTouchDeployment, Flags: state.FlagIgnorable,
			Body: state.TouchDeployment{Name: d.name, Time: now.UnixMilli()}})
		if err != nil {
			w.failed("touch", d.name, err)
		}
	})
}

// wakeUp wakes an idle deployment; concurrent callers share one wake.
func (w *waker) wakeUp(name string) {
	w.mu.Lock()
	if w.waking[name] {
		w.mu.Unlock()
		return
	}
	w.waking[name] = true
	w.mu.Unlock()
	w.async(func(ctx context.Context) {
		defer func() {
			w.mu.Lock()
			delete(w.waking, name)
			w.mu.Unlock()
		}()
		_, err := w.cfg.Proposer.Apply(ctx, state.Command{Type: state.TypeSetDeploymentIdle, Flags: state.FlagIgnorable,
			Body: state.SetDeploymentIdle{Name: name, Idle: false, Time: w.cfg.Now().UnixMilli()}})
		if err != nil {
			w.failed("wake", name, err)
		}
	})
}

// awaitReady is pick for a request that found no ready replica of a
// deployment that may go idle: it records the use, wakes what is idle and
// waits up to the wake bound for a ready replica.
func (r *Router) awaitReady(ctx context.Context, model string, deps []idleInfo) (string, []state.Node, error) {
	w := r.wake
	var timeout <-chan time.Time
	if w.cfg.Wait > 0 {
		t := time.NewTimer(w.cfg.Wait)
		defer t.Stop()
		timeout = t.C
	}
	cs, _ := r.state.(changeSource)
	for {
		var changed <-chan struct{}
		if cs != nil {
			changed = cs.Changed()
		}
		m := r.match(model)
		if len(m.nodes) > 0 {
			return m.tag, m.nodes, nil
		}
		if len(m.idle) > 0 {
			deps = m.idle
		}
		for _, d := range deps {
			if d.idle {
				w.wakeUp(d.name)
			}
		}
		if timeout == nil {
			return "", nil, loadingError(deps)
		}
		var poll *time.Timer
		var polled <-chan time.Time
		if changed == nil {
			poll = time.NewTimer(pollEvery)
			polled = poll.C
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-timeout:
			return "", nil, loadingError(deps)
		case <-changed:
		case <-polled:
		}
		if poll != nil {
			poll.Stop()
		}
	}
}

func loadingError(deps []idleInfo) *LoadingError {
	names, progress := make([]string, 0, len(deps)), make([]string, 0, len(deps))
	for _, d := range deps {
		names = append(names, d.name)
		progress = append(progress, d.progress)
	}
	return &LoadingError{Deployment: strings.Join(names, ", "), Progress: strings.Join(progress, "; "), RetryAfter: loadingRetryAfter}
}

// progressOf says how far the replicas of a deployment that is waking or
// loading have got, the furthest first: "loading on node n2",
// "pulling 37% on node n1".
func progressOf(s *state.State, d *state.Deployment) string {
	if d.Idle {
		return "the deployment is idle; waking it"
	}
	ps := s.PlacementsOf(d.Name)
	if len(ps) == 0 {
		return "no replica placed yet"
	}
	rank := map[state.PlacementState]int{state.PlacementReady: 0, state.PlacementLoading: 1, state.PlacementPulling: 2, state.PlacementPending: 3, state.PlacementFailed: 4}
	sort.SliceStable(ps, func(i, j int) bool {
		if rank[ps[i].State] != rank[ps[j].State] {
			return rank[ps[i].State] < rank[ps[j].State]
		}
		return ps[i].Progress > ps[j].Progress
	})
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, describe(p))
	}
	return strings.Join(parts, ", ")
}

func describe(p *state.Placement) string {
	switch p.State {
	case state.PlacementPulling:
		return fmt.Sprintf("pulling %d%% on node %s", int(p.Progress*100), p.Node)
	case state.PlacementLoading:
		return "loading into memory on node " + p.Node
	case state.PlacementPending:
		return "waiting to start on node " + p.Node
	case state.PlacementFailed:
		return fmt.Sprintf("failed on node %s (%s); retrying", p.Node, p.Reason)
	case state.PlacementReady:
		return "ready on node " + p.Node + ", which is not serving"
	}
	return string(p.State) + " on node " + p.Node
}
