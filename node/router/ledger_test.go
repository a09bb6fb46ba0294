package router

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node/router/load"
)

// TestLedgerCorrectsPeerReports checks that a peer's report loses this
// node's requests that it counted and that have ended since it arrived
// (queued ones first), never going below this node's requests still
// there from before it, and that requests sent after the report, or
// ended before it, change nothing.
func TestLedgerCorrectsPeerReports(t *testing.T) {
	now := time.Unix(1000, 0)
	recv := now.Add(-80 * time.Millisecond)
	var l ledger
	l.ended = map[replicaKey][]span{{"b", "m"}: {
		{sent: recv.Add(-300 * time.Millisecond), ended: recv.Add(-10 * time.Millisecond)}, // ended before the report
		{sent: recv.Add(-200 * time.Millisecond), ended: recv.Add(20 * time.Millisecond)},  // counted, ended since
		{sent: recv.Add(-100 * time.Millisecond), ended: recv.Add(50 * time.Millisecond)},  // counted, ended since
		{sent: recv.Add(10 * time.Millisecond), ended: recv.Add(60 * time.Millisecond)},    // sent after the report
	}}
	report := func(running, queued, outstanding, pending int) load.Load {
		return load.Load{Model: load.Model{Running: running, Queued: queued, Slots: 1}, Outstanding: outstanding, Pending: pending, Age: 80 * time.Millisecond}
	}
	for _, tc := range []struct {
		name                   string
		in                     load.Load
		wantRunning, wantQueue int
	}{
		{"both ended requests leave the queue first", report(1, 2, 0, 0), 1, 0},
		{"then the running ones", report(1, 1, 0, 0), 0, 0},
		{"this node's older requests still there stay", report(1, 1, 1, 0), 1, 0},
		{"requests sent since the report are not in it", report(1, 1, 1, 1), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := l.correct("b", "m", tc.in, now)
			if got.Running != tc.wantRunning || got.Queued != tc.wantQueue {
				t.Fatalf("corrected to %d running %d queued, want %d and %d", got.Running, got.Queued, tc.wantRunning, tc.wantQueue)
			}
		})
	}
	if got := l.correct("c", "m", report(1, 2, 0, 0), now); got.Running != 1 || got.Queued != 2 {
		t.Fatalf("another peer's report changed: %+v", got)
	}
	if got := l.correct("b", "m", load.Load{Model: load.Model{Running: 3}}, now); got.Running != 3 {
		t.Fatalf("no report (age 0) was corrected: %+v", got)
	}
}

// TestLedgerRecordsForwards checks that a forward leaves its span in the
// ledger once it ends, and counts in the send rate.
func TestLedgerRecordsForwards(t *testing.T) {
	var l ledger
	before := time.Now()
	end := l.sent("b", "m")
	if n := l.endedSince("b", "m", before); n != 0 {
		t.Fatalf("%d ended before the request did", n)
	}
	end()
	spans := l.ended[replicaKey{"b", "m"}]
	if len(spans) != 1 || spans[0].sent.Before(before) || spans[0].ended.Before(spans[0].sent) {
		t.Fatalf("spans %+v", spans)
	}
	if n := l.endedSince("b", "m", spans[0].sent.Add(-time.Nanosecond)); n != 0 {
		t.Fatalf("a request sent after t counted as ended since t: %d", n)
	}
	if mid := spans[0].sent.Add(spans[0].ended.Sub(spans[0].sent) / 2); spans[0].ended.After(mid) && l.endedSince("b", "m", mid) != 1 {
		t.Fatal("a request running at t and ended since is not counted")
	}
	if r := l.sendRate("b", "m", time.Now()); r <= 0 || r > 1/meterWindow.Seconds()+1e-9 {
		t.Fatalf("send rate %.3f after one request, want about 1/%s", r, meterWindow)
	}
	for range ledgerKeep + 10 {
		l.sent("b", "m")()
	}
	if n := len(l.ended[replicaKey{"b", "m"}]); n != ledgerKeep {
		t.Fatalf("%d spans kept, want %d", n, ledgerKeep)
	}
}

func TestMeterRate(t *testing.T) {
	var m meter
	t0 := time.Unix(0, 0)
	// 20 events a second for 20 seconds: the rate settles at 20.
	for i := range 400 {
		m.add(t0.Add(time.Duration(i) * 50 * time.Millisecond))
	}
	at := t0.Add(20 * time.Second)
	if r := m.rate(at); math.Abs(r-20) > 1 {
		t.Fatalf("rate %.2f, want about 20", r)
	}
	// Without events the rate decays with the window's time constant.
	if r := m.rate(at.Add(meterWindow)); math.Abs(r-20/math.E) > 0.5 {
		t.Fatalf("rate a window later %.2f, want about %.2f", r, 20/math.E)
	}
}

// TestReportedRateSettles checks that the arrival rate in a report is
// rounded, so that once a model stops getting requests the report stops
// changing within seconds (each change is a frame to every peer) instead
// of following the meter's decay for as long as a float lasts.
func TestReportedRateSettles(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, 0}, {0.04, 0}, {0.06, 0.1}, {4.27, 4.3}, {20, 20}} {
		if got := reportedRate(tc.in); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("reportedRate(%g) = %g, want %g", tc.in, got, tc.want)
		}
	}
	var m meter
	t0 := time.Unix(0, 0)
	for i := range 100 {
		m.add(t0.Add(time.Duration(i) * 50 * time.Millisecond)) // 20 a second
	}
	quiet := t0.Add(5 * time.Second)
	if got := reportedRate(m.rate(quiet.Add(20 * time.Second))); got != 0 {
		t.Fatalf("20 s after the last request the reported rate is %g, want 0", got)
	}
}

// TestSampleOfAnswerThatCameWhole checks what a node learns from an
// answer that is not streamed: its first chunk is its last, so the time
// to first token is the time it took less Ollama's decode time, not the
// whole time.
func TestSampleOfAnswerThatCameWhole(t *testing.T) {
	begin := time.Now()
	whole := &progress{}
	whole.chunk(true, api.Metrics{EvalCount: 24, EvalDuration: 230 * time.Millisecond, PromptEvalDuration: 60 * time.Millisecond})
	whole.first, whole.last = begin.Add(300*time.Millisecond), begin.Add(300*time.Millisecond)
	s := whole.sample(begin, 2048)
	if s.TTFT != 70*time.Millisecond || s.OutTokens != 24 || s.DecodeTime != 230*time.Millisecond {
		t.Fatalf("sample %+v, want a TTFT of 300-230 = 70 ms", s)
	}
	if s.PromptBytes != 2048 || s.PromptTime != 60*time.Millisecond {
		t.Fatalf("sample %+v lacks the prompt's bytes and time", s)
	}
	noTimes := &progress{}
	noTimes.chunk(true, api.Metrics{})
	if s := noTimes.sample(begin, 10); s.TTFT != 0 {
		t.Fatalf("a whole answer without a decode time gave a TTFT of %s, want none", s.TTFT)
	}
	streamed := &progress{}
	streamed.chunk(false, api.Metrics{})
	streamed.chunk(true, api.Metrics{EvalCount: 24, EvalDuration: 230 * time.Millisecond})
	streamed.first = begin.Add(70 * time.Millisecond)
	if s := streamed.sample(begin, 10); s.TTFT != 70*time.Millisecond {
		t.Fatalf("streamed TTFT %s, want the first chunk's 70 ms", s.TTFT)
	}
}

// TestPeerCandidateSeesOthersTraffic checks that a peer's candidate
// carries the rate at which other nodes send it requests: its arrivals
// less this node's own sends.
func TestPeerCandidateSeesOthersTraffic(t *testing.T) {
	g := newRig(t, "a", Config{}, fresh())
	g.r.cfg.View.Update(load.Report{Node: "b", Seq: 1, Models: map[string]load.Model{"m:1": {Slots: 1, ArrivalsPerSec: 10}}})
	if c := g.r.peerCandidate("b", "m:1", time.Now()); !c.Hop || c.OthersRate != 10 {
		t.Fatalf("candidate %+v, want a hop and others' rate 10", c)
	}
	for range 6 {
		g.r.ledger.sent("b", "m:1")()
	}
	c := g.r.peerCandidate("b", "m:1", time.Now())
	if want := 10 - 6/meterWindow.Seconds(); math.Abs(c.OthersRate-want) > 0.01 {
		t.Fatalf("others' rate %.3f, want %.3f (this node's sends taken off)", c.OthersRate, want)
	}
}

// TestReportCarriesArrivalsAndPrefill checks that the load report tells
// peers the model's arrival rate and, once measured, its prefill cost.
func TestReportCarriesArrivalsAndPrefill(t *testing.T) {
	g := newRig(t, "a", Config{}, fresh())
	for i := range 4 {
		ctx, _ := WithDecision(WithMeta(Forwarded(context.Background()), Meta{}))
		long := api.Message{Role: "user", Content: fmt.Sprint(i) + strings.Repeat("x", 2048)}
		if err := g.r.Chat(ctx, &api.ChatRequest{Model: "chat", Messages: []api.Message{long}}, func(api.ChatResponse) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	m := g.r.Report().Models["chat:latest"]
	if m.ArrivalsPerSec <= 0 || m.PrefillMsPerKiB <= 0 || m.PromptKiB < 2 {
		t.Fatalf("report %+v lacks the arrival rate or the prefill cost", m)
	}
}

// TestServedPromptIsCachedHere checks what a node records of a prompt its
// Ollama served: every prefix key, offered to peers, and on the next
// request sharing the prompt a sample of only the bytes its cache lacks.
func TestServedPromptIsCachedHere(t *testing.T) {
	g := newRig(t, "a", Config{}, fresh())
	chat := func(msgs ...api.Message) {
		t.Helper()
		ctx, _ := WithDecision(WithMeta(Forwarded(context.Background()), Meta{}))
		if err := g.r.Chat(ctx, &api.ChatRequest{Model: "chat", Messages: msgs}, func(api.ChatResponse) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	system := api.Message{Role: "system", Content: strings.Repeat("s", 4096)}
	chat(system, api.Message{Role: "user", Content: "first"})
	if ex := g.r.Exchange(0); len(ex.Prefixes) != 2 {
		t.Fatalf("offered %d prefix keys to peers, want both of the prompt's", len(ex.Prefixes))
	}
	before := g.r.Report().Models["chat:latest"].PromptKiB
	chat(system, api.Message{Role: "user", Content: "second"})
	after := g.r.Report().Models["chat:latest"].PromptKiB
	if before < 4 || after > 0.9*before {
		t.Fatalf("uncached prompt averaged %.2f KiB, then %.2f: the second request's cached system prompt was counted", before, after)
	}
}

// TestCandidatesCorrectPeerReports checks the wiring: a request this
// node forwarded and that ended after the peer reported it no longer
// counts in that peer's candidate, though the report still shows it, and
// the candidate carries the other nodes' arrival rate.
func TestCandidatesCorrectPeerReports(t *testing.T) {
	reps := fresh()
	reps["b"].block = make(chan struct{})
	g := newRig(t, "a", Config{}, reps)
	view := g.r.cfg.View
	view.Update(load.Report{Node: "b", Seq: 1, Models: map[string]load.Model{"m:1": {Slots: 1}}})
	done := make(chan error, 1)
	go func() {
		ctx, _ := WithDecision(WithMeta(context.Background(), Meta{}))
		done <- g.r.forward(ctx, state.Node{ID: "b", HTTPAddr: "b:1"}, plan{tag: "m:1", key: "m:1"}, func(ctx context.Context, to target, p *progress) error {
			return to.be.Chat(ctx, &api.ChatRequest{Model: to.tag}, func(api.ChatResponse) error { return nil })
		}, &progress{})
	}()
	testwait.For(t, 5*time.Second, "the forward to be outstanding", func() bool { return view.Load("b", "m:1").Outstanding == 1 })
	// b reports the request running, with its arrival rate.
	view.Update(load.Report{Node: "b", Seq: 2, Models: map[string]load.Model{"m:1": {Slots: 1, Running: 1, ArrivalsPerSec: 5}}})
	if c := g.r.peerCandidate("b", "m:1", time.Now().Add(time.Millisecond)); c.RunningFor <= 0 {
		t.Fatalf("while only this node's request runs on b, its candidate does not say for how long: %+v", c)
	}
	close(reps["b"].block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pl, err := g.r.plan(context.Background(), "chat")
	if err != nil {
		t.Fatal(err)
	}
	cands, _ := g.r.candidates(pl, nil)
	for _, c := range cands {
		if c.Node != "b" {
			continue
		}
		if c.Load.Running != 0 || view.Load("b", "m:1").Running != 1 {
			t.Fatalf("b's candidate counts %d running (the report %d), want the ended request gone", c.Load.Running, view.Load("b", "m:1").Running)
		}
		if c.OthersRate <= 4 || c.OthersRate >= 5 {
			t.Fatalf("others' rate %.2f, want 5 less this node's one request", c.OthersRate)
		}
		return
	}
	t.Fatal("b is not a candidate")
}

// TestRunningForWhereThisNodeSendsAll checks how long this node takes a
// peer's running request to have run: its oldest request still out, from
// when it was sent or, if one of its requests ended later, from then (it
// waited behind that one); unknown when the report shows other nodes'
// requests, or none of this node's is out.
func TestRunningForWhereThisNodeSendsAll(t *testing.T) {
	var l ledger
	now := time.Now()
	ours := load.Load{Model: load.Model{Running: 1, Queued: 1}, Outstanding: 2, Age: 10 * time.Millisecond}
	if got := l.runningFor("b", "m", ours, now); got != 0 {
		t.Fatalf("nothing out: running for %s", got)
	}
	first := l.out.begin(replicaKey{"b", "m"}, now.Add(-300*time.Millisecond))
	second := l.out.begin(replicaKey{"b", "m"}, now.Add(-200*time.Millisecond))
	if got := l.runningFor("b", "m", ours, now); got != 300*time.Millisecond {
		t.Fatalf("running for %s, want 300ms (the oldest request out)", got)
	}
	first()
	if got := l.runningFor("b", "m", ours, time.Now()); got < 0 || got > time.Since(now)+time.Millisecond {
		t.Fatalf("after the first ended the second runs since then: %s", got)
	}
	others := ours
	others.Running, others.Queued = 2, 1 // one more than this node's two
	if got := l.runningFor("b", "m", others, now); got != 0 {
		t.Fatalf("with other nodes' requests there: running for %s, want unknown", got)
	}
	second()
	if _, _, ok := l.out.oldest(replicaKey{"b", "m"}); ok {
		t.Fatal("an ended request is still out")
	}
}

// TestLocalRunningTimeReachesTheCandidate checks the wiring of the local
// replica: while a request runs on the local Ollama, this node's own
// candidate says how long it has run.
func TestLocalRunningTimeReachesTheCandidate(t *testing.T) {
	reps := fresh()
	reps["a"].block = make(chan struct{})
	g := newRig(t, "a", Config{}, reps)
	done := make(chan error, 1)
	go func() {
		ctx, _ := WithDecision(WithMeta(Forwarded(context.Background()), Meta{}))
		done <- g.r.Chat(ctx, &api.ChatRequest{Model: "m:1"}, func(api.ChatResponse) error { return nil })
	}()
	testwait.For(t, 5*time.Second, "the request to run here", func() bool { return g.r.runningHereFor("m:1", time.Now()) > 0 })
	pl, err := g.r.plan(context.Background(), "chat")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	cands, _ := g.r.candidates(pl, nil)
	for _, c := range cands {
		found = found || (c.Node == "a" && c.RunningFor > 0)
	}
	close(reps["a"].block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !found || g.r.runningHereFor("m:1", time.Now()) != 0 {
		t.Fatal("the local candidate did not carry its running request's time, or kept it after the end")
	}
}
