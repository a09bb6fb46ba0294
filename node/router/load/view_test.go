package load

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

const (
	testStale = time.Second
	testDown  = 3 * time.Second
)

func newTestView() (*View, *testwait.Clock) {
	c := testwait.NewClock()
	return NewView(ViewConfig{StaleAfter: testStale, DownAfter: testDown, Now: c.Now}), c
}

func report(node string, seq uint64, running int) Report {
	return Report{Node: node, Seq: seq, Models: map[string]Model{"m:1": {Running: running, Slots: 4}}}
}

func TestViewDefaults(t *testing.T) {
	v := NewView(ViewConfig{})
	if v.staleAfter != DefaultStaleAfter || v.downAfter != DefaultDownAfter || v.now == nil {
		t.Errorf("defaults = %v, %v, now set %v", v.staleAfter, v.downAfter, v.now != nil)
	}
}

func TestViewHealthAfterReport(t *testing.T) {
	v, c := newTestView()
	steps := []struct {
		name    string
		advance time.Duration
		report  bool
		health  Health
		age     time.Duration
	}{
		{name: "never reported", health: Unknown},
		{name: "never reported, much later", advance: time.Hour, health: Unknown},
		{name: "report arrives", report: true, health: Fresh},
		{name: "just before stale", advance: testStale - 1, health: Fresh, age: testStale - 1},
		{name: "stale", advance: 1, health: Unknown, age: testStale},
		{name: "just before down", advance: testDown - testStale - 1, health: Unknown, age: testDown - 1},
		{name: "down", advance: 1, health: Unhealthy, age: testDown},
		{name: "long down", advance: time.Hour, health: Unhealthy, age: testDown + time.Hour},
		{name: "back", report: true, health: Fresh},
	}
	var seq uint64
	for _, s := range steps {
		c.Advance(s.advance)
		if s.report {
			seq++
			if !v.Update(report("a", seq, 2)) {
				t.Fatalf("%s: report %d refused", s.name, seq)
			}
		}
		if got := v.Health("a"); got != s.health {
			t.Errorf("%s: Health = %v, want %v", s.name, got, s.health)
		}
		l := v.Load("a", "m:1")
		if l.Health != s.health || l.Age != s.age {
			t.Errorf("%s: Load health %v age %v, want %v %v", s.name, l.Health, l.Age, s.health, s.age)
		}
		if wantRunning := map[bool]int{true: 2}[seq > 0]; l.Running != wantRunning {
			t.Errorf("%s: Running = %d, want %d", s.name, l.Running, wantRunning)
		}
	}
}

func TestViewHealthTrackedWithoutReport(t *testing.T) {
	v, c := newTestView()
	v.Track([]string{"a"})
	c.Advance(testDown - time.Millisecond)
	if got := v.Health("a"); got != Unknown {
		t.Fatalf("before DownAfter: Health = %v, want unknown", got)
	}
	v.Track([]string{"a"}) // tracking again does not restart the clock
	c.Advance(time.Millisecond)
	if got := v.Health("a"); got != Unhealthy {
		t.Fatalf("at DownAfter: Health = %v, want unhealthy", got)
	}
	if l := v.Load("a", "m:1"); l.Health != Unhealthy || l.Age != 0 || l.Model != (Model{}) {
		t.Errorf("Load = %+v, want unhealthy, no age, no model", l)
	}
	v.Update(report("a", 1, 0))
	if got := v.Health("a"); got != Fresh {
		t.Errorf("after report: Health = %v, want fresh", got)
	}
}

func TestViewTrackDrops(t *testing.T) {
	v, c := newTestView()
	v.Track([]string{"a", "b"})
	v.Update(report("a", 1, 1))
	v.Update(report("b", 1, 1))
	v.Sent("b", "m:1")
	v.Track([]string{"a"})
	if l := v.Load("b", "m:1"); l != (Load{Health: Unknown}) {
		t.Errorf("dropped peer: Load = %+v, want only unknown", l)
	}
	if l := v.Load("a", "m:1"); l.Running != 1 || l.Health != Fresh {
		t.Errorf("kept peer: Load = %+v", l)
	}
	// Listed again later, b starts a new DownAfter clock.
	c.Advance(testDown)
	v.Track([]string{"a", "b"})
	if got := v.Health("b"); got != Unknown {
		t.Errorf("b tracked again: Health = %v, want unknown", got)
	}
	c.Advance(testDown)
	if got := v.Health("b"); got != Unhealthy {
		t.Errorf("b tracked again, DownAfter later: Health = %v, want unhealthy", got)
	}
}

func TestViewPending(t *testing.T) {
	v, _ := newTestView()
	pending := func() int { return v.Load("a", "m:1").Pending }
	check := func(step string, want int) {
		t.Helper()
		if got := pending(); got != want {
			t.Errorf("%s: Pending = %d, want %d", step, got, want)
		}
	}
	checkOther := func(step string, want int) {
		t.Helper()
		if got := v.Load("a", "m:2").Pending; got != want {
			t.Errorf("other model %s: Pending = %d, want %d", step, got, want)
		}
	}

	v.Update(report("a", 1, 0))
	done1 := v.Sent("a", "m:1")
	done2 := v.Sent("a", "m:1")
	other := v.Sent("a", "m:2")
	check("two sent", 2)
	checkOther("after two sent", 1)
	done1()
	check("one done", 1)
	done1()
	check("done twice", 1)

	v.Update(report("a", 1, 0)) // refused: does not reset
	check("duplicate report", 1)

	v.Update(report("a", 2, 2)) // includes the requests
	check("report", 0)
	checkOther("after report", 0)
	if got := v.Load("a", "m:1").Busy(); got != 2 {
		t.Errorf("Busy = %d, want 2", got)
	}

	done3 := v.Sent("a", "m:1")
	check("sent after report", 1)
	done2() // from before the report: must not take done3's count
	other()
	check("late done", 1)
	checkOther("after late done", 0)
	done3()
	check("all done", 0)
	done3()
	check("all done twice", 0)
}

func TestViewPendingOfDroppedPeer(t *testing.T) {
	v, _ := newTestView()
	done := v.Sent("a", "m:1") // before any report or Track
	if got := v.Load("a", "m:1").Pending; got != 1 {
		t.Fatalf("Pending = %d, want 1", got)
	}
	v.Track([]string{"b"}) // drops a with its count
	v.Track([]string{"a", "b"})
	late := v.Sent("a", "m:1")
	done() // belongs to the dropped a
	if got := v.Load("a", "m:1").Pending; got != 1 {
		t.Errorf("after a dropped count's done: Pending = %d, want 1", got)
	}
	late()
	if got := v.Load("a", "m:1").Pending; got != 0 {
		t.Errorf("Pending = %d, want 0", got)
	}
}

func TestViewSeq(t *testing.T) {
	tests := []struct {
		name   string
		last   uint64
		seq    uint64
		accept bool
	}{
		{"next", 10, 11, true},
		{"skips ahead", 10, 50, true},
		{"same", 10, 10, false},
		{"late", 10, 9, false},
		{"half", 10, 5, false},
		{"below half: restart", 10, 4, true},
		{"one: restart", 3, 1, true},
		{"one after one", 1, 1, false},
		{"zero after one", 1, 0, false},
		{"zero after two: restart", 2, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newTestView()
			if !v.Update(report("a", tt.last, 1)) {
				t.Fatal("first report refused")
			}
			done := v.Sent("a", "m:1")
			defer done()
			if got := v.Update(report("a", tt.seq, 7)); got != tt.accept {
				t.Errorf("Update = %v, want %v", got, tt.accept)
			}
			want := Load{Model: Model{Running: 1, Slots: 4}, Pending: 1, Outstanding: 1, Health: Fresh}
			if tt.accept {
				want = Load{Model: Model{Running: 7, Slots: 4}, Outstanding: 1, Health: Fresh}
			}
			if got := v.Load("a", "m:1"); got != want {
				t.Errorf("Load = %+v, want %+v", got, want)
			}
		})
	}
}

func TestViewFirstReportAnySeq(t *testing.T) {
	for _, seq := range []uint64{0, 1, 1 << 40} {
		v, _ := newTestView()
		if !v.Update(report("a", seq, 1)) {
			t.Errorf("first report with seq %d refused", seq)
		}
	}
}

func TestViewKeepsOwnCopy(t *testing.T) {
	v, _ := newTestView()
	r := report("a", 1, 1)
	v.Update(r)
	r.Models["m:1"] = Model{Running: 99}
	if got := v.Load("a", "m:1").Running; got != 1 {
		t.Errorf("Running = %d after the caller changed its map, want 1", got)
	}
}

func TestViewConcurrent(t *testing.T) {
	v, c := newTestView()
	nodes := []string{"a", "b", "c"}
	v.Track(nodes)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for seq := uint64(1); seq <= 200; seq++ {
				v.Update(report(n, seq, i))
				c.Advance(time.Millisecond)
			}
		})
		wg.Go(func() {
			for range 200 {
				done := v.Sent(n, "m:1")
				_ = v.Load(n, "m:1")
				done()
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			v.Track(nodes)
			_ = v.Health("a")
		}
	})
	wg.Wait()
	for i, n := range nodes {
		if l := v.Load(n, "m:1"); l.Pending != 0 || l.Running != i {
			t.Errorf("%s: Load = %+v, want no pending, %d running", n, l, i)
		}
	}
}

func BenchmarkViewLoad(b *testing.B) {
	v := NewView(ViewConfig{})
	var nodes, models []string
	for i := range 8 {
		nodes = append(nodes, fmt.Sprintf("node-%d", i))
	}
	for i := range 4 {
		models = append(models, fmt.Sprintf("model-%d:latest", i))
	}
	v.Track(nodes)
	for _, n := range nodes {
		r := Report{Node: n, Seq: 1, Models: map[string]Model{}}
		for _, m := range models {
			r.Models[m] = Model{Running: 1, Queued: 2, Slots: 4, TTFTMs: 80, TokensPerSec: 40, OutTokens: 300}
		}
		v.Update(r)
		v.Sent(n, models[0])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l := v.Load(nodes[i%len(nodes)], models[(i/len(nodes))%len(models)])
			if l.Slots != 4 {
				b.Fatal("wrong load")
			}
			i++
		}
	})
}

func TestViewOutstandingOutlivesReports(t *testing.T) {
	v := NewView(ViewConfig{})
	done1 := v.Sent("b", "m")
	done2 := v.Sent("b", "m")
	v.Update(Report{Node: "b", Seq: 1, Models: map[string]Model{"m": {Slots: 1}}})
	l := v.Load("b", "m")
	if l.Pending != 0 || l.Outstanding != 2 {
		t.Fatalf("after a report: pending %d, outstanding %d; want 0 and 2", l.Pending, l.Outstanding)
	}
	// The report shows nothing running (it is late or the requests are in
	// transit): this node's own two still count.
	if l.Busy() != 2 {
		t.Fatalf("busy %d, want at least this node's 2 outstanding", l.Busy())
	}
	done1()
	done1()
	if l := v.Load("b", "m"); l.Outstanding != 1 {
		t.Fatalf("outstanding %d after one ended, want 1", l.Outstanding)
	}
	done2()
	if l := v.Load("b", "m"); l.Outstanding != 0 || l.Busy() != 0 {
		t.Fatalf("after both ended: %+v", l)
	}
}
