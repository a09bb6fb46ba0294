package load

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sovra/sovra/internal/testwait"
)

// fakePeers is a fake cluster: the peer list and each peer's fetch.
type fakePeers struct {
	mu      sync.Mutex
	peers   []Peer
	fetch   map[string]func(ctx context.Context) (Report, error)
	calls   map[string]int
	listed  int // calls of Peers
	errs    []error
	errPeer []string
}

func newFakePeers(ids ...string) *fakePeers {
	f := &fakePeers{fetch: map[string]func(context.Context) (Report, error){}, calls: map[string]int{}}
	f.setPeers(ids...)
	for _, id := range ids {
		f.setFetch(id, reportingFetch(id, 1))
	}
	return f
}

// reportingFetch returns a fetch that reports running requests of m:1
// with a growing Seq.
func reportingFetch(id string, running int) func(context.Context) (Report, error) {
	var seq atomic.Uint64
	return func(context.Context) (Report, error) {
		return report(id, seq.Add(1), running), nil
	}
}

func (f *fakePeers) setPeers(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = nil
	for _, id := range ids {
		f.peers = append(f.peers, Peer{ID: id, Addr: id + ":7070"})
	}
}

func (f *fakePeers) setPeerList(peers ...Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = peers
}

func (f *fakePeers) setFetch(id string, fn func(context.Context) (Report, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetch[id] = fn
}

func (f *fakePeers) Peers() []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed++
	return append([]Peer(nil), f.peers...)
}

func (f *fakePeers) Fetch(ctx context.Context, p Peer) (Report, error) {
	f.mu.Lock()
	f.calls[p.ID]++
	fn := f.fetch[p.ID]
	f.mu.Unlock()
	return fn(ctx)
}

func (f *fakePeers) OnError(p Peer, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
	f.errPeer = append(f.errPeer, p.ID)
}

func (f *fakePeers) Calls(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func (f *fakePeers) Listed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listed
}

func (f *fakePeers) Errors() ([]string, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errPeer...), append([]error(nil), f.errs...)
}

// startPoller runs a fast Poller over f and v; the returned stop cancels
// it and waits for Run to return.
func startPoller(t *testing.T, v *View, f *fakePeers, timeout time.Duration) (stop func()) {
	t.Helper()
	p := NewPoller(PollerConfig{
		View: v, Interval: time.Millisecond, Timeout: timeout,
		Peers: f.Peers, Fetch: f.Fetch, OnError: f.OnError,
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		p.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-ran:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestPollerDefaults(t *testing.T) {
	tests := []struct {
		name              string
		interval, timeout time.Duration
		wantInterval      time.Duration
		wantTimeout       time.Duration
	}{
		{"zero", 0, 0, DefaultInterval, 500 * time.Millisecond},
		{"short interval: floor", 10 * time.Millisecond, 0, 10 * time.Millisecond, 500 * time.Millisecond},
		{"long interval: five of them", time.Second, 0, time.Second, 5 * time.Second},
		{"explicit timeout", time.Second, time.Millisecond, time.Second, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPoller(PollerConfig{Interval: tt.interval, Timeout: tt.timeout})
			if p.cfg.Interval != tt.wantInterval || p.cfg.Timeout != tt.wantTimeout {
				t.Errorf("interval %v timeout %v, want %v %v",
					p.cfg.Interval, p.cfg.Timeout, tt.wantInterval, tt.wantTimeout)
			}
		})
	}
}

func TestPollerFeedsView(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("a", "b")
	f.setFetch("b", reportingFetch("b", 3))
	stop := startPoller(t, v, f, 0)
	testwait.For(t, 10*time.Second, "both reports", func() bool {
		return v.Load("a", "m:1").Running == 1 && v.Load("b", "m:1").Running == 3
	})
	for _, n := range []string{"a", "b"} {
		if h := v.Health(n); h != Fresh {
			t.Errorf("%s: Health = %v, want fresh", n, h)
		}
	}
	stop()
	if ids, errs := f.Errors(); len(errs) != 0 {
		t.Errorf("OnError calls: %v %v", ids, errs)
	}
}

func TestPollerFailingPeerAges(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := testwait.NewClock()
	v := NewView(ViewConfig{StaleAfter: testStale, DownAfter: testDown, Now: c.Now})
	f := newFakePeers("a")
	stop := startPoller(t, v, f, 0)
	testwait.For(t, 10*time.Second, "a's report", func() bool { return v.Load("a", "m:1").Running == 1 })

	errDown := errors.New("connection refused")
	f.setFetch("a", func(context.Context) (Report, error) { return Report{}, errDown })
	calls := f.Calls("a")
	testwait.For(t, 10*time.Second, "several failed fetches", func() bool { return f.Calls("a") >= calls+5 })

	c.Advance(testStale)
	if l := v.Load("a", "m:1"); l.Running != 1 || l.Age != testStale || l.Health != Unknown {
		t.Errorf("stale: Load = %+v, want the last report, aged, unknown", l)
	}
	c.Advance(testDown - testStale)
	if l := v.Load("a", "m:1"); l.Running != 1 || l.Health != Unhealthy {
		t.Errorf("down: Load = %+v, want the last report, unhealthy", l)
	}
	ids, errs := f.Errors()
	if len(errs) != 1 || ids[0] != "a" || !errors.Is(errs[0], errDown) {
		t.Fatalf("OnError calls = %v %v, want one for a", ids, errs)
	}

	// Back, then failing again: a second OnError.
	f.setFetch("a", reportingFetch("a", 2)) // Seq 1 again: a restart
	testwait.For(t, 10*time.Second, "a back", func() bool { return v.Health("a") == Fresh })
	f.setFetch("a", func(context.Context) (Report, error) { return Report{}, errDown })
	testwait.For(t, 10*time.Second, "second OnError", func() bool { _, errs := f.Errors(); return len(errs) == 2 })
	calls = f.Calls("a")
	testwait.For(t, 10*time.Second, "more failed fetches", func() bool { return f.Calls("a") >= calls+5 })
	stop()
	if _, errs := f.Errors(); len(errs) != 2 {
		t.Errorf("OnError called %d times, want 2", len(errs))
	}
}

func TestPollerWrongNode(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("a")
	f.setFetch("a", reportingFetch("impostor", 1))
	stop := startPoller(t, v, f, 0)
	testwait.For(t, 10*time.Second, "OnError", func() bool { _, errs := f.Errors(); return len(errs) > 0 })
	stop()
	if _, errs := f.Errors(); !errors.Is(errs[0], ErrWrongNode) {
		t.Errorf("OnError(%v), want ErrWrongNode", errs[0])
	}
	if l := v.Load("a", "m:1"); l.Running != 0 {
		t.Errorf("a: Load = %+v, want no report", l)
	}
	if l := v.Load("impostor", "m:1"); l != (Load{Health: Unknown}) {
		t.Errorf("impostor: Load = %+v, want nothing", l)
	}
}

func TestPollerOneFetchPerPeer(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("slow", "fast")
	release := make(chan struct{})
	var running, most atomic.Int32
	f.setFetch("slow", func(ctx context.Context) (Report, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
			return report("slow", 1, 1), nil
		case <-ctx.Done():
			return Report{}, ctx.Err()
		}
	})
	stop := startPoller(t, v, f, time.Minute)
	testwait.For(t, 10*time.Second, "slow's first fetch", func() bool { return f.Calls("slow") == 1 })
	listed, fast := f.Listed(), f.Calls("fast")
	testwait.For(t, 10*time.Second, "ten more rounds, fast fetched in them", func() bool {
		return f.Listed() >= listed+10 && f.Calls("fast") >= fast+10
	})
	if got := f.Calls("slow"); got != 1 {
		t.Errorf("slow fetched %d times while its first fetch blocked, want 1", got)
	}
	close(release)
	testwait.For(t, 10*time.Second, "slow fetched again", func() bool { return f.Calls("slow") >= 3 })
	stop()
	if got := most.Load(); got != 1 {
		t.Errorf("at most %d fetches of slow at once, want 1", got)
	}
}

func TestPollerTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("a")
	f.setFetch("a", func(ctx context.Context) (Report, error) {
		<-ctx.Done()
		return Report{}, ctx.Err()
	})
	stop := startPoller(t, v, f, 5*time.Millisecond)
	testwait.For(t, 10*time.Second, "a fetched again after a timeout", func() bool { return f.Calls("a") >= 2 })
	stop()
	if _, errs := f.Errors(); len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("OnError calls %v, want one DeadlineExceeded", errs)
	}
}

func TestPollerDropsRemovedPeers(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("a", "b", "", "a") // empty and duplicate IDs are skipped
	stop := startPoller(t, v, f, 0)
	testwait.For(t, 10*time.Second, "both reports", func() bool {
		return v.Health("a") == Fresh && v.Health("b") == Fresh
	})
	v.Sent("b", "m:1")

	f.setPeers("a")
	testwait.For(t, 10*time.Second, "b dropped", func() bool { return v.Load("b", "m:1") == (Load{Health: Unknown}) })
	bCalls, aCalls := f.Calls("b"), f.Calls("a")
	testwait.For(t, 10*time.Second, "more rounds", func() bool { return f.Calls("a") >= aCalls+5 })
	if got := f.Calls("b") - bCalls; got > 1 { // one may have been in flight
		t.Errorf("b fetched %d times after it left, want at most 1", got)
	}
	if l := v.Load("b", "m:1"); l != (Load{Health: Unknown}) {
		t.Errorf("b: Load = %+v after it left, want nothing", l)
	}
	if v.Health("a") != Fresh {
		t.Errorf("a: Health = %v, want fresh", v.Health("a"))
	}
	stop()
	if _, errs := f.Errors(); len(errs) != 0 {
		t.Errorf("OnError calls: %v", errs)
	}
}

func TestPollerDiscardsReportOfRemovedPeer(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("a", "b")
	release := make(chan struct{})
	f.setFetch("b", func(context.Context) (Report, error) {
		<-release
		return report("b", 1, 5), nil
	})
	stop := startPoller(t, v, f, time.Minute)
	testwait.For(t, 10*time.Second, "b's fetch", func() bool { return f.Calls("b") == 1 })

	f.setPeers("a")
	listed := f.Listed()
	testwait.For(t, 10*time.Second, "rounds without b", func() bool { return f.Listed() >= listed+2 })

	// b comes back at another address: a new fetch starts only once the
	// old one is finished with, and the old one's report must not count.
	started := make(chan struct{})
	f.setFetch("b", func(ctx context.Context) (Report, error) {
		close(started)
		<-ctx.Done()
		return Report{}, ctx.Err()
	})
	f.setPeerList(Peer{ID: "a", Addr: "a:7070"}, Peer{ID: "b", Addr: "b2:7070"})
	close(release)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("b's second fetch did not start")
	}
	if l := v.Load("b", "m:1"); l != (Load{Health: Unknown}) {
		t.Errorf("b: Load = %+v, want no report (it was fetched before b left)", l)
	}
	stop()
}

func TestPollerStopsWithFetchInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	v := NewView(ViewConfig{})
	f := newFakePeers("a")
	p := NewPoller(PollerConfig{
		View: v, Interval: time.Millisecond, Timeout: time.Minute,
		Peers: f.Peers, Fetch: f.Fetch, OnError: f.OnError,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan struct{})
	var early atomic.Bool
	f.setFetch("a", func(ctx context.Context) (Report, error) {
		<-ctx.Done()
		// A slow fetch that outlives the cancel: Run must wait for it.
		// The wait below ends early only if Run returned meanwhile.
		select {
		case <-ran:
			early.Store(true)
		case <-time.After(50 * time.Millisecond):
		}
		return Report{}, ctx.Err()
	})
	go func() {
		defer close(ran)
		p.Run(ctx)
	}()
	testwait.For(t, 10*time.Second, "fetch started", func() bool { return f.Calls("a") == 1 })
	cancel()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if early.Load() {
		t.Error("Run returned before its fetch")
	}
	if _, errs := f.Errors(); len(errs) != 0 {
		t.Errorf("OnError on stop: %v", errs)
	}
}
