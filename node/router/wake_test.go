package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node/backend"
)

// log is a replicated state in one process: the proposer applies to the
// machine the router reads, and counts what it was given.
type log struct {
	t  *testing.T
	m  *state.Machine
	mu sync.Mutex
	// gate, when set, holds every proposal until it is closed.
	gate   chan struct{}
	counts map[state.Type]int
}

func newLog(t *testing.T) *log {
	return &log{t: t, m: state.NewMachine(), counts: map[state.Type]int{}}
}

func (l *log) Apply(ctx context.Context, cmd state.Command) (state.Outcome, error) {
	l.mu.Lock()
	l.counts[cmd.Type]++
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return state.Outcome{}, ctx.Err()
		}
	}
	return l.apply(cmd), nil
}

func (l *log) apply(cmd state.Command) state.Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := state.Encode(cmd)
	if err != nil {
		l.t.Error(err)
		return state.Outcome{}
	}
	return l.m.Apply(l.m.Index()+1, b)
}

func (l *log) do(typ state.Type, body any) {
	l.t.Helper()
	if err := l.apply(state.Command{Type: typ, Body: body}).Err(); err != nil {
		l.t.Fatal(err)
	}
}

func (l *log) count(typ state.Type) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[typ]
}

func (l *log) deployment(name string) state.Deployment {
	var d state.Deployment
	l.m.Read(func(s *state.State) { d = *s.Deployments[name] })
	return d
}

// idleWorld has nodes a and b and deployment chat (idle timeout 60s), idle.
func idleWorld(t *testing.T) *log {
	l := newLog(t)
	for _, id := range []string{"a", "b"} {
		l.do(state.TypeRegisterNode, state.RegisterNode{Node: state.Node{ID: id, HTTPAddr: id}})
	}
	l.do(state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: "chat", Model: "llama3.1:8b", Replicas: 1, IdleTimeout: 60}, Time: 1})
	l.do(state.TypeSetDeploymentIdle, state.SetDeploymentIdle{Name: "chat", Idle: true, Time: 2, UnusedSince: 1})
	return l
}

// awakeWorld is idleWorld with chat woken and its replica ready on node.
func awakeWorld(t *testing.T, node string) *log {
	l := idleWorld(t)
	l.do(state.TypeSetDeploymentIdle, state.SetDeploymentIdle{Name: "chat", Time: 3})
	l.do(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{"chat": {node}}})
	l.do(state.TypeReportPlacement, state.ReportPlacement{Deployment: "chat", Node: node, State: state.PlacementReady})
	return l
}

// answering is a backend that answers every chat with its own name and,
// unlike named, may serve concurrent requests.
type answering struct {
	listless
	name string
}

func (a answering) Chat(_ context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	return fn(api.ChatResponse{Model: req.Model, Done: true, Message: api.Message{Content: a.name}})
}

func peersRouter(l *log, cfg WakeConfig) *Router {
	cfg.Proposer = l
	return New("a", answering{name: "local"}, l.m, func(n state.Node) (backend.Backend, error) {
		return answering{name: n.ID}, nil
	}).WithWake(cfg)
}

func chat(ctx context.Context, r *Router, model string) (string, error) {
	var by string
	err := r.Chat(ctx, &api.ChatRequest{Model: model}, func(resp api.ChatResponse) error {
		by = resp.Message.Content
		return nil
	})
	return by, err
}

// TestRequestWakesIdleDeployment: concurrent requests for an idle
// deployment wake it once and wait until a replica is ready, then run on
// it.
func TestRequestWakesIdleDeployment(t *testing.T) {
	l := idleWorld(t)
	l.gate = make(chan struct{})
	r := peersRouter(l, WakeConfig{Wait: 10 * time.Second})
	defer r.Close()

	const callers = 4
	type result struct {
		by  string
		err error
	}
	results := make(chan result, callers)
	for range callers {
		go func() {
			by, err := chat(context.Background(), r, "chat")
			results <- result{by, err}
		}()
	}
	testwait.For(t, 5*time.Second, "a wake proposed", func() bool { return l.count(state.TypeSetDeploymentIdle) > 0 })
	if n := l.count(state.TypeSetDeploymentIdle); n != 1 {
		t.Fatalf("%d wakes proposed while the first was in flight, want 1", n)
	}
	close(l.gate)
	testwait.For(t, 5*time.Second, "the deployment woken", func() bool { return !l.deployment("chat").Idle })
	// Woken, the deployment still has no replica: no request may have
	// finished. (One that did too early would also fail the checks of
	// the answers below, which all come from the replica made ready.)
	select {
	case res := <-results:
		t.Fatalf("a request finished before any replica was ready: %+v", res)
	default:
	}
	// What the scheduler and node b's agent would do.
	l.do(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{"chat": {"b"}}})
	l.do(state.TypeReportPlacement, state.ReportPlacement{Deployment: "chat", Node: "b", State: state.PlacementReady})
	for range callers {
		select {
		case res := <-results:
			if res.err != nil || res.by != "b" {
				t.Fatalf("request after the wake: served by %q, err %v; want b", res.by, res.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request still waits with a ready replica")
		}
	}
	// Every caller waited through the one wake: none proposed its own,
	// then or later.
	if n := l.count(state.TypeSetDeploymentIdle); n != 1 {
		t.Fatalf("%d wakes proposed for %d callers, want 1", n, callers)
	}
}

// TestLoadingTimesOut: a request that may not wait, or whose wait runs
// out, fails with the loading progress.
func TestLoadingTimesOut(t *testing.T) {
	cases := []struct {
		name     string
		wait     time.Duration
		pulling  bool
		progress string
	}{
		{name: "no wait, idle", wait: 0, progress: "idle; waking it"},
		{name: "wait runs out while pulling", wait: 100 * time.Millisecond, pulling: true, progress: "pulling 37% on node b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := idleWorld(t)
			if tc.pulling {
				l.do(state.TypeSetDeploymentIdle, state.SetDeploymentIdle{Name: "chat", Time: 3})
				l.do(state.TypeSetPlacements, state.SetPlacements{Deployments: map[string][]string{"chat": {"b"}}})
				l.do(state.TypeReportPlacement, state.ReportPlacement{Deployment: "chat", Node: "b", State: state.PlacementPulling, Progress: 0.37})
			}
			r := peersRouter(l, WakeConfig{Wait: tc.wait})
			defer r.Close()
			start := time.Now()
			_, err := chat(context.Background(), r, "llama3.1:8b")
			var le *LoadingError
			if !errors.As(err, &le) || !errors.Is(err, ErrLoading) {
				t.Fatalf("err = %v, want a LoadingError", err)
			}
			if le.Deployment != "chat" || !strings.Contains(le.Progress, tc.progress) || le.RetryAfter <= 0 {
				t.Fatalf("loading error %+v, want progress %q", le, tc.progress)
			}
			if took := time.Since(start); took < tc.wait {
				t.Fatalf("gave up after %v, before the wait of %v", took, tc.wait)
			}
		})
	}
}

// TestTouchIsRateLimited: requests for a ready deployment that may go
// idle record its use at most once per touch interval, without waiting.
func TestTouchIsRateLimited(t *testing.T) {
	l := awakeWorld(t, "b")
	clk := testwait.NewClock()
	start := clk.Now().UnixMilli()
	r := peersRouter(l, WakeConfig{Wait: time.Second, Now: clk.Now})
	defer r.Close()
	waitLastUsed := func(want int64) {
		t.Helper()
		testwait.Until(t, 5*time.Second, func() bool { return l.deployment("chat").LastUsed == want },
			func() string { return fmt.Sprintf("last used %d, want %d", l.deployment("chat").LastUsed, want) })
	}
	for range 3 {
		if by, err := chat(context.Background(), r, "chat"); err != nil || by != "b" {
			t.Fatalf("served by %q, err %v", by, err)
		}
	}
	waitLastUsed(start)
	if n := l.count(state.TypeTouchDeployment); n != 1 {
		t.Fatalf("%d touches for three requests within the interval, want 1", n)
	}
	clk.Advance(touchInterval(60 * time.Second))
	if _, err := chat(context.Background(), r, "chat"); err != nil {
		t.Fatal(err)
	}
	waitLastUsed(start + touchInterval(60*time.Second).Milliseconds())
	if n := l.count(state.TypeTouchDeployment); n != 2 {
		t.Fatalf("%d touches, want 2 once the interval passed", n)
	}
}

func TestTouchInterval(t *testing.T) {
	cases := map[time.Duration]time.Duration{
		time.Second:      500 * time.Millisecond,
		10 * time.Second: 5 * time.Second,
		time.Minute:      15 * time.Second,
		time.Hour:        time.Minute,
	}
	for timeout, want := range cases {
		if got := touchInterval(timeout); got != want {
			t.Errorf("touchInterval(%v) = %v, want %v", timeout, got, want)
		}
	}
}

// chunky answers a chat with several chunks, calling between before each.
type chunky struct {
	listless
	chunks  int
	between func()
}

func (c chunky) Chat(_ context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	for i := range c.chunks {
		c.between()
		if err := fn(api.ChatResponse{Model: req.Model, Done: i == c.chunks-1}); err != nil {
			return err
		}
	}
	return nil
}

// TestLongStreamKeepsTouching: a stream that lasts several touch
// intervals records its use again as its chunks flow.
func TestLongStreamKeepsTouching(t *testing.T) {
	l := awakeWorld(t, "a")
	clk := testwait.NewClock()
	start := clk.Now().UnixMilli()
	step := touchInterval(60 * time.Second)
	local := chunky{chunks: 3, between: func() { clk.Advance(step) }}
	r := New("a", local, l.m, nil).WithWake(WakeConfig{Proposer: l, Wait: time.Second, Now: clk.Now})
	if err := r.Chat(context.Background(), &api.ChatRequest{Model: "chat"}, func(api.ChatResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// One touch when the request came, one per chunk an interval later.
	if n := l.count(state.TypeTouchDeployment); n != 4 {
		t.Fatalf("%d touches over a stream of three intervals, want 4", n)
	}
	if got, want := l.deployment("chat").LastUsed, start+3*step.Milliseconds(); got != want {
		t.Fatalf("last used %d, want %d (the last chunk)", got, want)
	}
}
