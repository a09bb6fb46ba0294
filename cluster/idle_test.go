package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/scheduler"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// TestLeaderMarksIdleAfterTheTimeout moves the scheduling clock: the
// leader marks a deployment idle only once it has been unused for longer
// than its idle timeout, a use moves that moment on, the scheduler then
// removes its replicas, and a wake brings them back.
func TestLeaderMarksIdleAfterTheTimeout(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	tc := newCluster(t, testOpts{n: 1, sched: SchedulingConfig{Debounce: 5 * time.Millisecond, Interval: 20 * time.Millisecond, Now: clock.Now}})
	tc.withGPU()
	l := tc.leader()
	apply := func(typ state.Type, body any) {
		t.Helper()
		if _, err := l.c.Apply(ctxFor(t, 10*time.Second), state.Command{Type: typ, Flags: state.FlagIgnorable, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	deployment := func() state.Deployment {
		var d state.Deployment
		l.c.machine.Read(func(s *state.State) { d = *s.Deployments["d"] })
		return d
	}
	// A run that starts after the test has read the clock has seen it.
	runsAfter := func(what string) {
		t.Helper()
		start := time.Now()
		testwait.For(t, 10*time.Second, what, func() bool {
			run, ok := l.c.LastSchedule()
			return ok && run.Committed == 0 && time.Since(start) > 100*time.Millisecond
		})
	}
	apply(state.TypePutDeployment, state.PutDeployment{Deployment: state.Deployment{Name: "d", Model: "llama3.2:1b", Replicas: 1, IdleTimeout: 60},
		Time: clock.Now().UnixMilli()})
	testwait.For(t, 10*time.Second, "a replica", func() bool { return len(placementsOf(l, "d")) == 1 })

	clock.add(50 * time.Second)
	// The use is recorded with a clock ten minutes slow: it counts from
	// when the leader saw it all the same.
	apply(state.TypeTouchDeployment, state.TouchDeployment{Name: "d", Time: clock.Now().Add(-10 * time.Minute).UnixMilli()})
	runsAfter("the leader sees the use")
	clock.add(20 * time.Second) // 70s after the write, 20s after the use
	runsAfter("runs after the use")
	if d := deployment(); d.Idle || len(placementsOf(l, "d")) != 1 {
		t.Fatalf("deployment used 20s ago with a 60s timeout went idle: %+v", d)
	}

	clock.add(41 * time.Second)
	testwait.For(t, 10*time.Second, "idle, no replica", func() bool { return deployment().Idle && len(placementsOf(l, "d")) == 0 })
	runsAfter("runs after going idle")
	if run, _ := l.c.LastSchedule(); run.Plan.Deployment("d") == nil || run.Plan.Deployment("d").Status != scheduler.StatusIdle {
		t.Fatalf("plan of an idle deployment: %+v", run.Plan.Deployment("d"))
	}

	apply(state.TypeSetDeploymentIdle, state.SetDeploymentIdle{Name: "d", Time: clock.Now().UnixMilli()})
	testwait.For(t, 10*time.Second, "woken, a replica", func() bool { return !deployment().Idle && len(placementsOf(l, "d")) == 1 })
	runsAfter("runs after the wake")
	if d := deployment(); d.Idle {
		t.Fatalf("a just-woken deployment went idle again: %+v", d)
	}
}

// TestIdleDue: idleness is timed from when the leader saw a use, on its
// own clock; the proposers' clocks (LastUsed) do not count.
func TestIdleDue(t *testing.T) {
	s := state.New()
	s.Deployments["never"] = &state.Deployment{Name: "never", UsedIndex: 1}
	s.Deployments["due"] = &state.Deployment{Name: "due", IdleTimeout: 10, UsedIndex: 5, LastUsed: 1000}
	s.Deployments["soon"] = &state.Deployment{Name: "soon", IdleTimeout: 10, UsedIndex: 7, LastUsed: 5000}
	s.Deployments["asleep"] = &state.Deployment{Name: "asleep", IdleTimeout: 1, Idle: true}
	seenAt := func(due, soon int64) map[string]useSeen {
		return map[string]useSeen{"due": {first: 1, index: 5, at: due}, "soon": {first: 1, index: 7, at: soon}, "gone": {first: 1}}
	}
	cases := []struct {
		name     string
		now      int64
		seen     map[string]useSeen
		due      []string
		wantNext int64
	}{
		{name: "one due, one next", now: 11001, seen: seenAt(1000, 5000), due: []string{"due"}, wantNext: 15000},
		{name: "exactly the timeout is not past it", now: 11000, seen: seenAt(1000, 5000), wantNext: 11000},
		{name: "a deployment first seen now gets a whole timeout", now: 16000, seen: map[string]useSeen{"gone": {first: 1}}, wantNext: 26000},
		{name: "a use seen late counts from then", now: 16000, seen: seenAt(9000, 1), due: []string{"soon"}, wantNext: 19000},
		// A use recorded with a clock ten minutes behind: LastUsed is far
		// in the past, but the leader saw a new UsedIndex now.
		{name: "a use from a slow clock counts when seen", now: 700000, seen: map[string]useSeen{"due": {first: 1, index: 4, at: 1}, "soon": {first: 1, index: 7, at: 695000}}, wantNext: 705000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			due, next := idleDue(s, tc.now, tc.seen)
			var names []string
			for _, d := range due {
				names = append(names, d.Name)
			}
			if len(names) != len(tc.due) || (len(names) > 0 && names[0] != tc.due[0]) || next != tc.wantNext {
				t.Fatalf("due %v next %d, want %v next %d", names, next, tc.due, tc.wantNext)
			}
			if _, ok := tc.seen["gone"]; ok {
				t.Error("a deployment that is gone stayed in seen")
			}
			if u, ok := tc.seen["soon"]; !ok || u.index != 7 {
				t.Errorf("the use of a deployment was not recorded: %+v", u)
			}
			if u := tc.seen["due"]; u.index != 5 {
				t.Errorf("the latest use of due is index %d, want 5", u.index)
			}
		})
	}
}
