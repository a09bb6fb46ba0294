package balance

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sovra/sovra/node/router/load"
)

func model(slots int, ttftMs, tps, out float64) load.Model {
	return load.Model{Slots: slots, TTFTMs: ttftMs, TokensPerSec: tps, OutTokens: out}
}

func cand(node string, m load.Model, running, queued int) Candidate {
	m.Running, m.Queued = running, queued
	return Candidate{Node: node, Load: load.Load{Model: m}}
}

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Policy
		ok   bool
	}{{"", TimeToFinish, true}, {"ttf", TimeToFinish, true}, {"round-robin", RoundRobin, true},
		{"least-connections", LeastConnections, true}, {"random", "", false}} {
		got, err := ParsePolicy(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePolicy(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestTimeToFinish(t *testing.T) {
	slow := model(1, 200, 25, 100) // 4.2 s per request
	fast := model(4, 50, 100, 100) // 1.05 s per request
	// Long answers: 100 s on the slow replica, about 1 s on the fast one;
	// the fast one has 20 requests queued (about 21.7 s to finish).
	longSlow, longFast := model(1, 10, 10, 1000), model(1, 10, 1000, 1000)
	// Short answers of one token: 0.11 s on the slow replica, 11 ms on
	// the fast one (0.24 s behind its queue).
	shortSlow, shortFast := model(1, 10, 10, 1), model(1, 10, 1000, 1)
	for _, tc := range []struct {
		name      string
		maxTokens int
		cands     []Candidate
		want      string
	}{
		{"fast node with a short queue beats an idle slow one", 0,
			[]Candidate{cand("slow", slow, 0, 0), cand("fast", fast, 4, 2)}, "fast"},
		{"idle slow beats a long queue on the fast node", 0,
			[]Candidate{cand("slow", slow, 0, 0), cand("fast", fast, 4, 20)}, "slow"},
		{"free slot beats a full equal replica", 0,
			[]Candidate{cand("a", fast, 4, 0), cand("b", fast, 3, 0)}, "b"},
		{"pending requests count as load", 0,
			[]Candidate{{Node: "a", Load: load.Load{Model: fast, Pending: 5}}, cand("b", fast, 1, 0)}, "b"},
		{"a stale report costs more than a fresh one", 0,
			[]Candidate{{Node: "a", Load: load.Load{Model: fast, Health: load.Unknown}}, cand("b", fast, 1, 0)}, "b"},
		{"without max tokens long answers favour the fast replica's queue", 0,
			[]Candidate{cand("slow", longSlow, 0, 0), cand("fast", longFast, 1, 20)}, "fast"},
		// Capped at one token, the slow replica serves in 0.11 s, before
		// the fast one's queue (0.24 s) drains.
		{"max tokens shortens the service of a slow replica", 1,
			[]Candidate{cand("slow", longSlow, 0, 0), cand("fast", longFast, 1, 20)}, "slow"},
		// A bound above the usual answer length does not lengthen it.
		{"max tokens above the measured answers changes nothing", 1000,
			[]Candidate{cand("slow", shortSlow, 0, 0), cand("fast", shortFast, 1, 20)}, "slow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{Rand: seeded()})
			i, why := b.Pick(Request{Model: "m", MaxTokens: tc.maxTokens}, tc.cands)
			if got := tc.cands[i].Node; got != tc.want || why != ReasonTTF {
				t.Fatalf("picked %s (%s), want %s (ttf)", got, why, tc.want)
			}
		})
	}
}

// TestHopCostBreaksTies checks that of equal replicas this node's own
// wins, every time, and that the forward's cost is only a tie break: a
// remote replica with a free slot beats a local one whose slots are full.
func TestHopCostBreaksTies(t *testing.T) {
	b := New(Config{Rand: seeded()})
	m := model(4, 50, 100, 100)
	local, remote := cand("local", m, 1, 0), cand("remote", m, 1, 0)
	remote.Hop = true
	for _, cands := range [][]Candidate{{local, remote}, {remote, local}} {
		for range 100 {
			if i, _ := b.Pick(Request{Model: "m"}, cands); cands[i].Node != "local" {
				t.Fatalf("an equal remote replica won over the local one")
			}
		}
	}
	full := cand("local", m, 4, 0)
	if i, _ := b.Pick(Request{Model: "m"}, []Candidate{full, remote}); i != 1 {
		t.Fatalf("a local replica with no free slot beat a remote one with room")
	}
}

// TestStalePeerLoadIsAged checks how a peer's report ages: the other
// nodes' requests it counted finish at the replica's pace (100 ms each
// here), other nodes keep sending at OthersRate, and this node's own
// requests there count whole until they end.
func TestStalePeerLoadIsAged(t *testing.T) {
	m := model(1, 20, 100, 8) // 100 ms a request
	local := cand("local", m, 1, 0)
	peer := func(running, queued, outstanding int, othersRate float64) Candidate {
		c := cand("peer", m, running, queued)
		c.Load.Outstanding, c.Load.Age, c.Hop, c.OthersRate = outstanding, 200*time.Millisecond, true, othersRate
		return c
	}
	for _, tc := range []struct {
		name string
		peer Candidate
		want string
	}{
		{"two others' requests 200 ms ago have ended", peer(1, 1, 0, 0), "peer"},
		{"others kept sending since", peer(1, 1, 0, 20), "local"},
		{"this node's own requests still run", peer(1, 1, 2, 0), "local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{Rand: seeded()})
			cands := []Candidate{local, tc.peer}
			if i, _ := b.Pick(Request{Model: "m"}, cands); cands[i].Node != tc.want {
				t.Fatalf("picked %s, want %s", cands[i].Node, tc.want)
			}
		})
	}
}

// TestWaitRampsWithExpectedLoad checks the wait behind an expected,
// fractional number of requests: none while a slot is surely free, half
// a service behind one running request on one slot, continuous between.
func TestWaitRampsWithExpectedLoad(t *testing.T) {
	for _, tc := range []struct{ busy, slots, want float64 }{
		{0, 1, 0}, {0.5, 1, 25}, {1, 1, 50}, {2, 1, 150},
		{1, 2, 0}, {1.5, 2, 50.0 / 3}, {2, 2, 100.0 / 3}, {3, 2, 50 + 100.0/3},
	} {
		if got := wait(tc.busy, tc.slots, 100, 100/(tc.slots+1)); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("wait(%g busy, %g slots) = %.3f, want %.3f", tc.busy, tc.slots, got, tc.want)
		}
	}
}

// TestKnownRunningTimeFreesTheFirstSlot checks that where this node
// knows how long a replica's running request has run, the replica's slot
// frees after the rest of a service: of two equal replicas each running
// one request, the one whose request is nearly done wins, every time.
func TestKnownRunningTimeFreesTheFirstSlot(t *testing.T) {
	m := model(1, 20, 100, 8) // 100 ms a request
	nearlyDone, justStarted := cand("nearly-done", m, 1, 0), cand("just-started", m, 1, 0)
	nearlyDone.RunningFor, justStarted.RunningFor = 90*time.Millisecond, 10*time.Millisecond
	b := New(Config{Rand: seeded()})
	for _, cands := range [][]Candidate{{nearlyDone, justStarted}, {justStarted, nearlyDone}} {
		for range 20 {
			if i, _ := b.Pick(Request{Model: "m"}, cands); cands[i].Node != "nearly-done" {
				t.Fatal("a replica whose request had just started won over one whose request was nearly done")
			}
		}
	}
	for _, tc := range []struct {
		running time.Duration
		want    float64
	}{{0, 50}, {30 * time.Millisecond, 70}, {500 * time.Millisecond, 5}} {
		c := cand("x", m, 1, 0)
		c.RunningFor = tc.running
		if got := firstFree(c, 100, 1); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("running for %s: first slot frees after %.1f ms, want %.1f", tc.running, got, tc.want)
		}
	}
}

func TestUnmeasuredReplicasRankByQueuePerSlot(t *testing.T) {
	b := New(Config{Rand: seeded()})
	cands := []Candidate{cand("a", load.Model{Slots: 2}, 2, 1), cand("b", load.Model{Slots: 4}, 4, 0), cand("c", load.Model{Slots: 1}, 1, 0)}
	i, _ := b.Pick(Request{}, cands)
	if cands[i].Node != "b" {
		t.Fatalf("picked %s, want b (the shortest wait per slot)", cands[i].Node)
	}
}

func TestTiesAreBrokenAtRandom(t *testing.T) {
	b := New(Config{Rand: seeded()})
	m := model(1, 10, 100, 10)
	cands := []Candidate{cand("a", m, 0, 0), cand("b", m, 0, 0), cand("c", m, 0, 0)}
	seen := map[string]int{}
	for range 300 {
		i, _ := b.Pick(Request{}, cands)
		seen[cands[i].Node]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if seen[n] < 60 {
			t.Fatalf("ties are not shared: %v", seen)
		}
	}
}

func TestRoundRobinAndLeastConnections(t *testing.T) {
	m := model(1, 10, 100, 10)
	cands := []Candidate{cand("a", m, 5, 0), cand("b", m, 0, 0), cand("c", m, 2, 0)}
	rr := New(Config{Policy: RoundRobin})
	var got []string
	for range 4 {
		i, why := rr.Pick(Request{Model: "x"}, cands)
		if why != ReasonRoundRobin {
			t.Fatalf("reason %s", why)
		}
		got = append(got, cands[i].Node)
	}
	if want := []string{"a", "b", "c", "a"}; !equal(got, want) {
		t.Fatalf("round robin %v, want %v", got, want)
	}
	// A second model turns on its own.
	if i, _ := rr.Pick(Request{Model: "y"}, cands); cands[i].Node != "a" {
		t.Fatalf("model y starts at %s", cands[i].Node)
	}
	lc := New(Config{Policy: LeastConnections, Rand: seeded()})
	if i, why := lc.Pick(Request{}, cands); cands[i].Node != "b" || why != ReasonLeastConns {
		t.Fatalf("least connections picked %s (%s)", cands[i].Node, why)
	}
	if i, why := lc.Pick(Request{}, cands[:1]); i != 0 || why != ReasonOnly {
		t.Fatalf("one candidate: %d %s", i, why)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAlikeSpeedsRankByWait checks that replicas whose learned service
// times differ by no more than their noise count as equally fast: one
// with a free slot wins over one about to free its slot whose average
// happens to be a few percent lower (least-connections' choice, and the
// oracle's on equal backends), while a replica twice as fast still wins
// over a free slow one when its request is about to end.
func TestAlikeSpeedsRankByWait(t *testing.T) {
	b := New(Config{Rand: seeded()})
	busy := cand("busy", model(1, 30, 100, 12), 1, 0) // 150 ms a request
	busy.RunningFor = 145 * time.Millisecond          // 5 ms left
	idle := cand("idle", model(1, 40, 100, 12), 0, 0) // 160 ms: 7 % slower
	for _, cands := range [][]Candidate{{busy, idle}, {idle, busy}} {
		for range 20 {
			if i, _ := b.Pick(Request{Model: "m"}, cands); cands[i].Node != "idle" {
				t.Fatal("a busy replica won over a free one of the same speed by the noise of its average")
			}
		}
	}
	fast := cand("fast", model(1, 15, 200, 12), 1, 0) // 75 ms a request
	fast.RunningFor = 70 * time.Millisecond
	if i, _ := b.Pick(Request{Model: "m"}, []Candidate{idle, fast}); i != 1 {
		t.Fatal("a free replica half as fast won over a fast one about to free its slot")
	}
}

func TestAlikeGroupsWithinNoise(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []float64
	}{
		{"equal replicas share their mean", []float64{104, 100, 96}, []float64{100, 100, 100}},
		{"two speeds stay apart", []float64{100, 210, 105, 200}, []float64{102.5, 205, 102.5, 205}},
		{"a group spans noise from its fastest", []float64{100, 109, 118}, []float64{104.5, 104.5, 118}},
		{"one replica is itself", []float64{42}, []float64{42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := append([]float64(nil), tc.in...)
			alike(got, speedNoise)
			for i := range got {
				if math.Abs(got[i]-tc.out[i]) > 1e-9 {
					t.Fatalf("alike(%v) = %v, want %v", tc.in, got, tc.out)
				}
			}
		})
	}
}
