package admit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want Config
	}{
		{"zero", Config{}, Config{Slots: 1}},
		{"negative", Config{Slots: -2, MaxQueue: -1, Timeout: -time.Second}, Config{Slots: 1}},
		{"kept", Config{Slots: 4, MaxQueue: 64, Timeout: time.Minute}, Config{Slots: 4, MaxQueue: 64, Timeout: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.normalize()
			if got.Now == nil {
				t.Fatal("Now left nil")
			}
			if got.Slots != tt.want.Slots || got.MaxQueue != tt.want.MaxQueue || got.Timeout != tt.want.Timeout {
				t.Fatalf("normalize() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSlotsBoundConcurrency(t *testing.T) {
	const slots, callers = 3, 12
	q := New(Config{Slots: slots, MaxQueue: callers})
	var holders, most atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			tk, err := q.Acquire(context.Background(), "k")
			if err != nil {
				t.Error(err)
				return
			}
			n := holders.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			holders.Add(-1)
			tk.Release()
		})
	}
	testwait.For(t, 10*time.Second, "slots full and the rest queued", func() bool {
		return q.Stats() == Stats{Running: slots, Queued: callers - slots, Slots: slots}
	})
	if n := holders.Load(); n != slots {
		t.Fatalf("%d holders, want %d", n, slots)
	}
	close(release)
	wg.Wait()
	if m := most.Load(); m != slots {
		t.Fatalf("at most %d held at once, want exactly %d", m, slots)
	}
	wantStats(t, q, Stats{Slots: slots})
}

func TestFreeSlotWaitsNothing(t *testing.T) {
	clk := testwait.NewClock()
	q := New(Config{Slots: 1, MaxQueue: 1, Now: clk.Now})
	tk := mustAcquire(t, q, "")
	if tk.Waited() != 0 {
		t.Fatalf("Waited() = %v, want 0", tk.Waited())
	}
	out := make(chan outcome, 1)
	enqueueAll(t, q, []string{""}, out)
	clk.Advance(3 * time.Second)
	tk.Release()
	o := recv(t, out)
	if o.err != nil {
		t.Fatal(o.err)
	}
	defer o.t.Release()
	if o.t.Waited() != 3*time.Second {
		t.Fatalf("Waited() = %v, want 3s", o.t.Waited())
	}
}

func TestSaturatedWithoutQueue(t *testing.T) {
	for _, maxQueue := range []int{0, -3} {
		q := New(Config{Slots: 2, MaxQueue: maxQueue})
		a, b := mustAcquire(t, q, "x"), mustAcquire(t, q, "y")
		_, err := q.Acquire(context.Background(), "z")
		re := mustReject(t, err, ErrSaturated)
		if !strings.Contains(re.Error(), "2 slots") {
			t.Errorf("message %q does not name the slots", re.Error())
		}
		wantStats(t, q, Stats{Running: 2, Slots: 2})
		a.Release()
		mustAcquire(t, q, "z").Release()
		b.Release()
		wantStats(t, q, Stats{Slots: 2})
	}
}

func TestTimeout(t *testing.T) {
	const limit = 30 * time.Millisecond
	q := New(Config{Slots: 1, MaxQueue: 4, Timeout: limit})
	holder := mustAcquire(t, q, "a")
	defer holder.Release()
	start := time.Now()
	_, err := q.Acquire(context.Background(), "b")
	elapsed := time.Since(start)
	re := mustReject(t, err, ErrTimeout)
	if elapsed < limit || re.Waited < limit {
		t.Fatalf("gave up after %v (Waited %v), want at least %v", elapsed, re.Waited, limit)
	}
	wantStats(t, q, Stats{Running: 1, Slots: 1})
}

func TestCancelWhileWaiting(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 4})
	holder := mustAcquire(t, q, "a")
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan outcome, 1)
	spawn(ctx, q, "b", "b", out)
	testwait.For(t, 10*time.Second, "waiter queued", func() bool { return q.Stats().Queued == 1 })
	cancel()
	o := recv(t, out)
	if !errors.Is(o.err, context.Canceled) || o.t != nil {
		t.Fatalf("Acquire = %v, %v; want context.Canceled", o.t, o.err)
	}
	var re *RejectError
	if errors.As(o.err, &re) {
		t.Fatalf("cancellation reported as a rejection: %v", re)
	}
	wantStats(t, q, Stats{Running: 1, Slots: 1})
	holder.Release()
	wantStats(t, q, Stats{Slots: 1})
}

func TestCancelledBeforeAcquire(t *testing.T) {
	q := New(Config{Slots: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Acquire(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	wantStats(t, q, Stats{Slots: 1})
}

func TestReleaseIdempotent(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 1})
	first := mustAcquire(t, q, "a")
	first.Release()
	first.Release()
	wantStats(t, q, Stats{Slots: 1})

	second := mustAcquire(t, q, "a")
	first.Release() // stale: must not free second's slot
	out := make(chan outcome, 1)
	spawn(context.Background(), q, "b", "b", out)
	testwait.For(t, 10*time.Second, "waiter queued", func() bool { return q.Stats().Queued == 1 })
	wantStats(t, q, Stats{Running: 1, Queued: 1, Slots: 1})
	second.Release()
	o := recv(t, out)
	if o.err != nil {
		t.Fatal(o.err)
	}
	o.t.Release()
	o.t.Release()
	wantStats(t, q, Stats{Slots: 1})
}

func TestSetSlots(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 8})
	holder := mustAcquire(t, q, "a")
	out := make(chan outcome, 4)
	enqueueAll(t, q, []string{"a", "b", "a"}, out)

	q.SetSlots(4) // grow: all three waiters admitted at once
	held := []*Ticket{holder}
	for range 3 {
		o := recv(t, out)
		if o.err != nil {
			t.Fatal(o.err)
		}
		held = append(held, o.t)
	}
	wantStats(t, q, Stats{Running: 4, Slots: 4})

	q.SetSlots(2) // shrink: nobody new until fewer than 2 run
	enqueueAll(t, q, []string{"c"}, out)
	held[0].Release()
	held[1].Release()
	wantStats(t, q, Stats{Running: 2, Queued: 1, Slots: 2})
	held[2].Release()
	o := recv(t, out)
	if o.err != nil {
		t.Fatal(o.err)
	}
	wantStats(t, q, Stats{Running: 2, Slots: 2})
	o.t.Release()
	held[3].Release()

	q.SetSlots(0)
	wantStats(t, q, Stats{Slots: 1})
}

func TestRejectErrorIs(t *testing.T) {
	reasons := []error{ErrKeyOverShare, ErrSaturated, ErrTimeout, ErrWaitTooLong}
	for _, reason := range reasons {
		t.Run(reason.Error(), func(t *testing.T) {
			var err error = &RejectError{Reason: reason, RetryAfter: time.Second, msg: "in words"}
			for _, other := range reasons {
				if got := errors.Is(err, other); got != (other == reason) {
					t.Errorf("errors.Is(%v, %v) = %v", reason, other, got)
				}
			}
			if errors.Unwrap(err) != reason {
				t.Errorf("Unwrap() = %v, want %v", errors.Unwrap(err), reason)
			}
			if err.Error() != "in words" {
				t.Errorf("Error() = %q", err.Error())
			}
			if bare := (&RejectError{Reason: reason}); bare.Error() != reason.Error() {
				t.Errorf("Error() without a message = %q, want the reason's", bare.Error())
			}
		})
	}
}

func TestGroup(t *testing.T) {
	g := NewGroup(Config{Slots: 2, MaxQueue: 1})
	if s := g.Stats(); len(s) != 0 {
		t.Fatalf("Stats() of an empty group = %v", s)
	}
	var wg sync.WaitGroup
	got := make([]*Queue, 8)
	for i := range got {
		wg.Go(func() { got[i] = g.Queue("m1") })
	}
	wg.Wait()
	for _, q := range got {
		if q != got[0] {
			t.Fatal("concurrent first uses made two queues for one model")
		}
	}
	m2 := g.Queue("m2")
	if m2 == got[0] {
		t.Fatal("two models share a queue")
	}
	tk := mustAcquire(t, got[0], "k")
	defer tk.Release()
	want := map[string]Stats{"m1": {Running: 1, Slots: 2}, "m2": {Slots: 2}}
	stats := g.Stats()
	if len(stats) != len(want) {
		t.Fatalf("Stats() = %v, want %v", stats, want)
	}
	for model, s := range want {
		if stats[model] != s {
			t.Fatalf("Stats()[%s] = %+v, want %+v", model, stats[model], s)
		}
	}
}

func TestIdleQueuesExpire(t *testing.T) {
	cases := []struct {
		name string
		// use runs on the old queue before the clock moves on; it returns
		// what to undo at the end.
		use     func(t *testing.T, q *Queue) func()
		elapsed time.Duration
		kept    bool
	}{
		{name: "idle past the expiry", use: func(*testing.T, *Queue) func() { return func() {} }, elapsed: 2 * time.Minute},
		{name: "idle, not yet expired", use: func(*testing.T, *Queue) func() { return func() {} }, elapsed: 30 * time.Second, kept: true},
		{name: "running past the expiry", use: func(t *testing.T, q *Queue) func() { return mustAcquire(t, q, "k").Release }, elapsed: 2 * time.Minute, kept: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := testwait.NewClock()
			g := NewGroup(Config{Slots: 1, Now: clock.Now, IdleExpiry: time.Minute})
			old := g.Queue("old")
			defer tc.use(t, old)()
			clock.Advance(tc.elapsed)
			g.Queue("new") // a new queue sweeps the expired ones
			_, kept := g.Stats()["old"]
			if kept != tc.kept {
				t.Fatalf("queue kept: %v, want %v", kept, tc.kept)
			}
			if again := g.Queue("old"); (again == old) != tc.kept {
				t.Fatalf("the model got the same queue back: %v, want %v", again == old, tc.kept)
			}
		})
	}
}

// TestChangedFollowsTheStats checks that Changed is called after every
// change of the queue's stats that a request causes: a slot taken, a place
// in the queue taken, a slot released (and handed to the waiter).
func TestChangedFollowsTheStats(t *testing.T) {
	var calls atomic.Int32
	q := New(Config{Slots: 1, MaxQueue: 1, Changed: func() { calls.Add(1) }})
	first, err := q.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d calls after a slot was taken, want 1", n)
	}
	got := make(chan *Ticket, 1)
	go func() {
		tk, _ := q.Acquire(context.Background(), "b")
		got <- tk
	}()
	testwait.For(t, 5*time.Second, "the second request to wait", func() bool { return q.Stats().Queued == 1 })
	testwait.For(t, 5*time.Second, "the call for the wait", func() bool { return calls.Load() == 2 })
	first.Release()
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls after a release, want 3", n)
	}
	second := <-got
	second.Release()
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d calls after the second release, want 4", n)
	}
}
