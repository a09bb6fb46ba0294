package bench

import (
	"testing"
	"time"
)

func TestOracleAssign(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	svc := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = time.Duration(m) * time.Millisecond
		}
		return out
	}
	// Server 0: one slot, 100ms per request; server 1: one slot, 300ms.
	o := NewOracle([]int{1, 1})
	steps := []struct {
		name      string
		id        uint64
		now       int
		server    int
		start     bool
		finishAt0 int // predicted finish on server 0 after the step
	}{
		{"the fast idle server", 1, 0, 0, true, 200},
		{"queued behind the fast one beats the slow one (200 < 300)", 2, 0, 0, false, 300},
		{"a tie at 300 goes to the emptier server", 3, 0, 1, true, 300},
		{"queued twice on the fast one (300+100) beats 300+300", 4, 0, 0, false, 400},
	}
	for _, s := range steps {
		server, start := o.Assign(s.id, at(s.now), svc(100, 300))
		if server != s.server || start != s.start {
			t.Fatalf("%s: server %d start %v, want %d %v", s.name, server, start, s.server, s.start)
		}
		if got := o.Predict(0, at(s.now), 100*time.Millisecond); !got.Equal(at(s.finishAt0)) {
			t.Fatalf("%s: server 0 predicts %v, want %dms", s.name, got.Sub(t0), s.finishAt0)
		}
	}
	if r, q := o.Busy(0); r != 1 || q != 2 {
		t.Fatalf("server 0 busy %d running %d queued, want 1 and 2", r, q)
	}
	// Request 1 ends late, at 150ms: request 2 starts then, and 4 waits.
	next, ok := o.Finish(0, 1, at(150))
	if !ok || next != 2 {
		t.Fatalf("finish of 1 handed out %d %v, want 2", next, ok)
	}
	// 2 runs to 250, 4 then to 350, a new one to 450.
	if got := o.Predict(0, at(150), 100*time.Millisecond); !got.Equal(at(450)) {
		t.Fatalf("after the late finish server 0 predicts %v, want 450ms", got.Sub(t0))
	}
	// A running request past its expected end is taken to end now.
	if got := o.Predict(1, at(400), 300*time.Millisecond); !got.Equal(at(700)) {
		t.Fatalf("server 1 with its request overdue predicts %v, want 700ms", got.Sub(t0))
	}
	if next, ok := o.Finish(1, 3, at(300)); ok {
		t.Fatalf("server 1 had nothing queued but handed out %d", next)
	}
	if next, ok := o.Finish(0, 2, at(250)); !ok || next != 4 {
		t.Fatalf("finish of 2 handed out %d %v, want 4", next, ok)
	}
	if next, ok := o.Finish(0, 4, at(350)); ok {
		t.Fatalf("an empty queue handed out %d", next)
	}
	if r, q := o.Busy(0); r != 0 || q != 0 {
		t.Fatalf("server 0 busy %d %d after everything ended", r, q)
	}
}

func TestOracleSlotsAndSpeeds(t *testing.T) {
	now := time.Unix(0, 0)
	// Two slots at 200ms against one at 100ms: the first two go to the
	// fast one (100, then 200 queued ties with 200 idle: the emptier
	// wins), and so on by finish time.
	o := NewOracle([]int{2, 1})
	service := []time.Duration{200 * time.Millisecond, 100 * time.Millisecond}
	var got []int
	var starts int
	for id := range uint64(6) {
		s, start := o.Assign(id, now, service)
		got = append(got, s)
		if start {
			starts++
		}
	}
	// Finish times: 1:100, 0:200, 0:200, 1:200, 1:300, 0:400 or 1:400.
	want := []int{1, 0, 0, 1, 1, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("assignments %v, want %v", got, want)
		}
	}
	if starts != 3 {
		t.Errorf("%d requests started at once, want 3 (the slots)", starts)
	}
}
