package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router/balance"
	"github.com/sovra/sovra/node/router/load"
)

// forwardedChat sends a chat for the tag m:1, as another node forwards it,
// and waits for its answer.
func forwardedChat(ctx context.Context, r *Router) error {
	return r.Chat(ctx, &api.ChatRequest{Model: "m:1"}, func(api.ChatResponse) error { return nil })
}

// report gives the view a fresh report of node's replica of m:1.
func report(view *load.View, node string, seq uint64, m load.Model) {
	m.Slots = max(m.Slots, 1)
	view.Update(load.Report{Node: node, Seq: seq, Models: map[string]load.Model{"m:1": m}})
}

// TestForwardedRequestSentBackWhenItsSlotsAreTaken: node a, whose one slot
// a request holds, sends back a forwarded request that may be sent back
// while another replica is free; it queues the request when it may not
// send it back, when no other replica would answer sooner, and it serves
// it at once when its slot is free.
func TestForwardedRequestSentBackWhenItsSlotsAreTaken(t *testing.T) {
	reps := fresh()
	reps["a"].block = make(chan struct{})
	reg := prometheus.NewRegistry()
	g := newRig(t, "a", Config{Slots: 1, Registerer: reg}, reps)
	view := g.r.cfg.View
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	send := func(fwd func(context.Context) context.Context) chan error {
		done := make(chan error, 1)
		go func() {
			c, _ := WithDecision(WithMeta(fwd(ctx), Meta{}))
			done <- forwardedChat(c, g.r)
		}()
		return done
	}
	q := g.r.queue("m:1")

	// Free slot: served here, never sent back, though b is far faster
	// (the forwarding node chose a knowing as much of b as a does).
	report(view, "b", 1, load.Model{TTFTMs: 10})
	report(view, "c", 1, load.Model{TTFTMs: 300})
	first := send(ForwardedMaySendBack)
	testwait.For(t, 5*time.Second, "the first request to hold a's slot", func() bool { return q.Stats().Running == 1 })

	// Slot taken, b free: sent back, at once and without queueing.
	bounded, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	if err := forwardedChat(mustDecide(ForwardedMaySendBack(bounded)), g.r); !errors.Is(err, ErrSentBack) {
		t.Fatalf("slot taken, b free: %v, want ErrSentBack", err)
	}
	if st := q.Stats(); st.Queued != 0 || reps["a"].calls.Load() != 1 {
		t.Fatalf("a sent-back request left %+v and %d calls on a", st, reps["a"].calls.Load())
	}
	if got := rejectedFor(t, reg, SentBackCode); got != 1 {
		t.Fatalf("sent-back requests counted %v, want 1", got)
	}

	// Slot taken, b free, but the forwarding node did not allow it: queued.
	queued := send(Forwarded)
	testwait.For(t, 5*time.Second, "the request to queue", func() bool { return q.Stats().Queued == 1 })

	// Slot taken, b and c busier than a: queued too.
	report(view, "b", 2, load.Model{TTFTMs: 300, Running: 1, Queued: 3})
	report(view, "c", 2, load.Model{TTFTMs: 300, Running: 1, Queued: 3})
	waits := send(ForwardedMaySendBack)
	testwait.For(t, 5*time.Second, "the second request to queue", func() bool { return q.Stats().Queued == 2 })

	close(reps["a"].block)
	for _, done := range []chan error{first, queued, waits} {
		if err := <-done; err != nil {
			t.Fatalf("a queued request: %v", err)
		}
	}
}

func mustDecide(ctx context.Context) context.Context {
	ctx, _ = WithDecision(WithMeta(ctx, Meta{}))
	return ctx
}

// TestNoSendBackWithoutAnotherReplicaOrUnderOtherPolicies: a node that is
// the only ready replica, or that routes by another policy, queues.
func TestNoSendBackWithoutAnotherReplicaOrUnderOtherPolicies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy balance.Policy
		only   bool
	}{
		{"only replica", balance.TimeToFinish, true},
		{"least connections", balance.LeastConnections, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reps := fresh()
			reps["a"].block = make(chan struct{})
			st := cluster3()
			if tc.only {
				delete(st.Placements, "chat\x00b")
				delete(st.Placements, "chat\x00c")
			}
			r := New("a", reps["a"], fixed{st}, func(n state.Node) (backend.Backend, error) { return reps[n.ID], nil }).
				WithConfig(Config{Slots: 1, Policy: tc.policy})
			report(r.cfg.View, "b", 1, load.Model{})
			report(r.cfg.View, "c", 1, load.Model{})
			done := make(chan error, 2)
			for range 2 {
				go func() { done <- forwardedChat(mustDecide(ForwardedMaySendBack(context.Background())), r) }()
			}
			q := r.queue("m:1")
			testwait.For(t, 5*time.Second, "one request running, one queued", func() bool {
				s := q.Stats()
				return s.Running == 1 && s.Queued == 1
			})
			close(reps["a"].block)
			for range 2 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// sendsBack is a peer replica that sends back every attempt it may, as a
// peer transport reports it, and serves the others.
type sendsBack struct {
	*replica
	allowed []bool
}

func (s *sendsBack) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	may := MayBeSentBack(ctx)
	s.allowed = append(s.allowed, may)
	if may {
		DecisionOf(ctx).SetPeerError(SentBackCode, time.Second)
		return backend.ErrOverloaded
	}
	return s.replica.Chat(ctx, req, fn)
}

// TestSentBackRequestIsRoutedAgain: the routing node lets only a first
// forward be sent back; a request sent back goes to another replica
// without spending the retry budget, or, when no other is left, to the
// same one, which may then not send it back.
func TestSentBackRequestIsRoutedAgain(t *testing.T) {
	for _, only := range []bool{false, true} {
		reps := fresh()
		for id, rep := range reps {
			rep.name = id
		}
		b := &sendsBack{replica: reps["b"]}
		st := cluster3()
		if only {
			delete(st.Placements, "chat\x00a")
			delete(st.Placements, "chat\x00c")
		}
		r := New("a", reps["a"], fixed{st}, func(n state.Node) (backend.Backend, error) {
			if n.ID == "b" {
				return b, nil
			}
			return reps[n.ID], nil
		}).WithConfig(Config{Slots: 1})
		r.budget = retryBudget{} // no retry left but those that cost nothing
		// a is busy, b and c free, c slower: b is chosen first, and
		// c once b sent the request back.
		report(r.cfg.View, "b", 1, load.Model{TTFTMs: 100})
		report(r.cfg.View, "c", 1, load.Model{TTFTMs: 150})
		hold := r.queue(r.label("m:1"))
		t1, err := hold.Acquire(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, d := WithDecision(WithMeta(context.Background(), Meta{}))
		var by string
		err = r.Chat(ctx, &api.ChatRequest{Model: "chat"}, func(resp api.ChatResponse) error {
			if by == "" {
				by = resp.Message.Content
			}
			return nil
		})
		t1.Release()
		want := "c"
		if only {
			want = "b"
		}
		if err != nil || by != want || d.View().Attempts != 2 {
			t.Fatalf("only b=%v: served by %q after %d attempts (%v), want %s after 2", only, by, d.View().Attempts, err, want)
		}
		if len(b.allowed) == 0 || !b.allowed[0] || (only && (len(b.allowed) != 2 || b.allowed[1])) {
			t.Fatalf("only b=%v: b's attempts allowed to be sent back: %v, want the first only", only, b.allowed)
		}
	}
}

// rejectedFor is how many requests the admission metrics count as turned
// away for reason.
func rejectedFor(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range fams {
		if f.GetName() != "sovra_admission_rejected_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
