package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router/admit"
	"github.com/sovra/sovra/node/router/balance"
	"github.com/sovra/sovra/node/router/load"
)

// request is what routing needs of one inference request.
type request struct {
	model     string
	maxTokens int
	prefix    []uint64
	// prefixBytes are the bytes each prefix key covers; promptBytes the
	// whole prompt's length when it is more than the last of them.
	prefixBytes []int
	promptBytes int
	// held is how many prefix keys the replica it is sent to holds in
	// its cache, when the routing node knew (heldKnown).
	held      int
	heldKnown bool
}

// balanced is the request as the balancer sees it.
func (q request) balanced(key string) balance.Request {
	return balance.Request{Model: key, MaxTokens: q.maxTokens, Prefix: q.prefix, PrefixBytes: q.prefixBytes, PromptBytes: q.promptBytes}
}

// target is where one attempt runs: the backend, the Ollama tag to ask it
// for, and the keep_alive to send (nil: none).
type target struct {
	be        backend.Backend
	tag       string
	keepAlive *api.Duration
}

// attempt runs the request on one target and records its progress in p.
type attempt func(ctx context.Context, to target, p *progress) error

// progress is how far one attempt got: whether its first chunk reached
// the caller (after which it is never retried), whether that chunk was
// already the last (an answer that is not streamed), and its final
// metrics.
type progress struct {
	mu        sync.Mutex
	started   bool
	first     time.Time
	firstDone bool
	last      time.Time
	metrics   api.Metrics
	touch     func()
}

// chunk records one chunk of the answer before it is passed on.
func (p *progress) chunk(done bool, m api.Metrics) {
	p.mu.Lock()
	now := time.Now()
	if !p.started {
		p.started, p.first, p.firstDone = true, now, done
	}
	p.last = now
	if done {
		p.metrics = m
	}
	p.mu.Unlock()
	if p.touch != nil {
		p.touch()
	}
}

func (p *progress) began() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// route runs one request where it should run: here when another node
// forwarded it or there is no cluster; otherwise on the replica the
// policy picks, retrying other replicas while nothing has reached the
// client.
func (r *Router) route(ctx context.Context, q request, call attempt) error {
	if r.state == nil || isForwarded(ctx) {
		if !isForwarded(ctx) {
			r.met.decided(r.label(q.model), balance.ReasonOnly)
		}
		DecisionOf(ctx).chose(r.self, normalize(q.model)+"@"+r.self, balance.ReasonOnly)
		if r.sendBack(ctx, q) {
			r.met.rejected(r.label(q.model), ErrSentBack)
			return ErrSentBack
		}
		return r.serveHere(ctx, q, q.model, call, &progress{})
	}
	pl, err := r.plan(ctx, q.model)
	if err != nil {
		return err
	}
	touch := func() { r.used(route{idle: pl.idle}) }
	if len(pl.nodes) == 0 {
		r.met.decided(r.label(pl.tag), balance.ReasonOnly)
		DecisionOf(ctx).chose(r.self, pl.key+"@"+r.self, balance.ReasonOnly)
		return r.serveHere(ctx, q, pl.tag, call, &progress{touch: touch})
	}
	breq := q.balanced(pl.key)
	tried := map[string]bool{}
	start := time.Now()
	var last error
	sentFrom := ""
	for n := 0; ; n++ {
		cands, resting := r.candidates(pl, tried)
		if len(cands) == 0 && sentFrom != "" {
			// The replica that sent the request back is the only one
			// left: it serves it after all.
			delete(tried, sentFrom)
			cands, resting = r.candidates(pl, tried)
		}
		if len(cands) == 0 {
			if last != nil {
				return last
			}
			return fmt.Errorf("%w: every replica of %s is failing", backend.ErrUnavailable, q.model)
		}
		i, why := r.bal.Pick(breq, cands)
		node := cands[i].Node
		q.held, q.heldKnown = r.bal.Affinity().HeldBy(q.prefix, node), true
		r.bal.Served(breq, node)
		r.met.decided(pl.key, why)
		DecisionOf(ctx).chose(node, pl.key+"@"+node, why)
		p := &progress{touch: touch}
		actx := ctx
		if n == 0 && r.cfg.Retries > 0 && cands[i].Hop && len(metaOf(ctx).Jurisdictions) == 0 && r.bal.Policy() == balance.TimeToFinish {
			actx = AllowSendBack(ctx)
		}
		err := r.dispatch(actx, pl.byID[node], pl, q, call, p, resting)
		if err == nil || p.began() || ctx.Err() != nil || !retryable(err) {
			return err
		}
		back := sentBack(actx, err)
		// An unreachable replica (a dead peer, a stopped Ollama) or one
		// that sent the request back costs nothing to retry away from:
		// only other retries spend the budget.
		if n >= r.cfg.Retries || time.Since(start) > r.cfg.RetryBudget || (!unreachable(err) && !back && !r.budget.spend()) {
			return err
		}
		if back {
			sentFrom = node
		}
		tried[node] = true
		last = err
		r.met.retried(pl.key)
	}
}

// plan is where a request may go: the Ollama tag to ask for (and its
// normalized form, which keys queues, loads, breakers and metrics) and the
// nodes with a ready replica that the request's residency allows.
type plan struct {
	tag   string
	key   string
	nodes []state.Node
	byID  map[string]state.Node
	idle  []idleInfo
}

func (r *Router) plan(ctx context.Context, model string) (plan, error) {
	meta := metaOf(ctx)
	m := r.match(model)
	if meta.ModelAllowed != nil && !meta.ModelAllowed(append(m.names, model)...) {
		return plan{}, fmt.Errorf("%w: %s", ErrModelForbidden, model)
	}
	pl := plan{tag: m.tag}
	if r.wake != nil && r.wake.cfg.Proposer != nil && len(m.idle) > 0 {
		pl.idle = m.idle
		r.used(route{idle: pl.idle})
		if len(m.nodes) == 0 {
			var err error
			if pl.tag, m.nodes, err = r.awaitReady(ctx, model, m.idle); err != nil {
				return plan{}, err
			}
		}
	}
	pl.key = normalize(pl.tag)
	var elsewhere []string
	pl.byID = map[string]state.Node{}
	for _, n := range m.nodes {
		if !meta.allows(n.Labels) {
			elsewhere = appendUnique(elsewhere, n.Labels[JurisdictionLabel])
			continue
		}
		pl.nodes = append(pl.nodes, n)
		pl.byID[n.ID] = n
	}
	if len(pl.nodes) == 0 && (len(elsewhere) > 0 || !meta.allows(r.selfLabels())) {
		e := &ResidencyError{Model: model, Allowed: meta.Jurisdictions, Elsewhere: elsewhere}
		for _, labels := range m.placed {
			e.NotReady = e.NotReady || meta.allows(labels)
		}
		return plan{}, e
	}
	return pl, nil
}

func appendUnique(list []string, s string) []string {
	if s == "" {
		s = "(no jurisdiction label)"
	}
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (r *Router) selfLabels() map[string]string {
	var labels map[string]string
	r.state.Read(func(s *state.State) {
		if n, ok := s.Nodes[r.self]; ok {
			labels = n.Labels
		}
	})
	return labels
}

// candidates are the plan's replicas not yet tried, whose breaker lets
// requests through, with their load. Replicas on peers that stopped
// reporting are left out while any other is left. When every replica
// left is resting (its breaker open), they are the candidates, and
// resting says so: a replica that failed a few seconds ago (a node that
// died and came back) is a better bet than a certain failure.
func (r *Router) candidates(pl plan, tried map[string]bool) (cands []balance.Candidate, resting bool) {
	tag := pl.key
	var out, unhealthy, rest []balance.Candidate
	for _, n := range pl.nodes {
		if tried[n.ID] {
			continue
		}
		c := balance.Candidate{Node: n.ID}
		if n.ID == r.self {
			c.Load = r.localLoad(tag)
			c.RunningFor = r.runningHereFor(tag, time.Now())
		} else {
			c = r.peerCandidate(n.ID, tag, time.Now())
		}
		switch {
		case !r.breakers.closedOrProbing(n.ID, tag):
			rest = append(rest, c)
		case c.Load.Health == load.Unhealthy:
			unhealthy = append(unhealthy, c)
		default:
			out = append(out, c)
		}
	}
	switch {
	case len(out) > 0:
		return out, false
	case len(unhealthy) > 0:
		return unhealthy, false
	}
	return rest, len(rest) > 0
}

// peerCandidate is node's replica of model as this node best knows it
// now: the peer's last report less this node's requests it counted that
// have ended since, and the rate at which other nodes send it requests
// that this node does not see.
func (r *Router) peerCandidate(node, model string, now time.Time) balance.Candidate {
	l := r.ledger.correct(node, model, r.cfg.View.Load(node, model), now)
	others := max(0, l.ArrivalsPerSec-r.ledger.sendRate(node, model, now))
	return balance.Candidate{Node: node, Load: l, Hop: true, OthersRate: others, RunningFor: r.ledger.runningFor(node, model, l, now)}
}

// dispatch runs one attempt on node n, through its breaker; a resting
// replica (breaker open) is tried past it, and closes it by succeeding.
func (r *Router) dispatch(ctx context.Context, n state.Node, pl plan, q request, call attempt, p *progress, resting bool) error {
	done, err := r.breakers.allow(n.ID, pl.key)
	if err != nil && resting {
		done, err = r.breakers.pastOpen(n.ID, pl.key), nil
	}
	if err != nil {
		return err
	}
	if n.ID == r.self {
		err = r.serveHere(ctx, q, pl.tag, call, p)
	} else {
		err = r.forward(ctx, n, pl, call, p)
	}
	done(err)
	return err
}

// forward runs an attempt on a peer, counted as pending there until the
// peer's next load report includes it or it ends.
func (r *Router) forward(ctx context.Context, n state.Node, pl plan, call attempt, p *progress) error {
	be, err := r.peer(n)
	if err != nil {
		return fmt.Errorf("%w: %v", backend.ErrUnavailable, err)
	}
	sent := r.cfg.View.Sent(n.ID, pl.key)
	defer sent()
	defer r.ledger.sent(n.ID, pl.key)()
	r.met.forwarded(pl.key, n.ID)
	return call(ctx, target{be: be, tag: pl.tag}, p)
}

// serveHere runs an attempt on the local Ollama once the model's
// admission queue gives it a slot, and learns the model's speed from it.
func (r *Router) serveHere(ctx context.Context, q request, tag string, call attempt, p *progress) error {
	name := r.label(tag)
	r.arrivals.add(name, time.Now())
	t, err := r.queue(name).Acquire(ctx, metaOf(ctx).Key)
	if err != nil {
		r.met.rejected(name, err)
		return err
	}
	defer t.Release()
	defer r.running.begin(name, time.Now())()
	DecisionOf(ctx).SetQueueWait(t.Waited())
	r.met.waited(name, t.Waited())
	uncached := r.uncachedHere(q)
	if len(q.prefix) > 0 {
		r.bal.Affinity().Publish(q.prefix, r.self)
	}
	begin := time.Now()
	err = call(ctx, target{be: r.local, tag: tag, keepAlive: r.keepAliveFor(tag)}, p)
	if err != nil && !notTheReplicasFault(err) && r.cfg.LocalFailed != nil {
		r.cfg.LocalFailed()
	}
	if err == nil && p.began() {
		r.tracker.Observe(name, p.sample(begin, uncached))
	}
	return err
}

// uncachedHere is how many bytes of q's prompt the local Ollama's cache
// does not hold, as far as this node knows: what the routing node found,
// or else this node's own table.
func (r *Router) uncachedHere(q request) int {
	held := q.held
	if !q.heldKnown {
		held = r.bal.Affinity().HeldBy(q.prefix, r.self)
	}
	total := q.promptBytes
	if n := len(q.prefixBytes); n > 0 {
		total = max(total, q.prefixBytes[n-1])
	}
	if held > 0 && held <= len(q.prefixBytes) {
		total -= q.prefixBytes[held-1]
	}
	return max(total, 1)
}

// sample is what a finished attempt measured: its time to first token
// (for an answer that came whole, the time until it came less the decode
// time Ollama reports), its answer, decode and prompt evaluation.
func (p *progress) sample(begin time.Time, uncached int) load.Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := load.Sample{TTFT: p.first.Sub(begin), OutTokens: p.metrics.EvalCount, DecodeTime: p.metrics.EvalDuration,
		PromptBytes: uncached, PromptTime: p.metrics.PromptEvalDuration}
	if p.firstDone {
		s.TTFT = 0 // not measured
		if p.metrics.EvalDuration > 0 {
			s.TTFT = max(0, p.last.Sub(begin)-p.metrics.EvalDuration)
		}
	}
	return s
}

// queue is the admission queue of a label.
func (r *Router) queue(label string) *admit.Queue {
	if label == otherLabel {
		label = ""
	}
	return r.queues.Queue(label)
}

// runningHereFor is how long the local Ollama's oldest running request
// of model has run (0: none runs).
func (r *Router) runningHereFor(model string, now time.Time) time.Duration {
	if start, _, ok := r.running.oldest(r.label(model)); ok {
		return now.Sub(start)
	}
	return 0
}

// localLoad is this node's own load for a model.
func (r *Router) localLoad(name string) load.Load {
	st := r.queue(r.label(name)).Stats()
	m := r.tracker.Get(name)
	m.Running, m.Queued, m.Slots = st.Running, st.Queued, st.Slots
	return load.Load{Model: m, Health: load.Fresh}
}

// retryable says whether an attempt that failed before its first byte may
// be tried on another replica: the replica turned it away for load, or
// failed.
func retryable(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, backend.ErrBadRequest), errors.Is(err, ErrResidency), errors.Is(err, ErrLoading):
		return false
	}
	return turnedAway(err) || errors.Is(err, backend.ErrUnavailable) || errors.Is(err, backend.ErrFailed) ||
		errors.Is(err, backend.ErrTruncated) || errors.Is(err, backend.ErrModelNotFound)
}

// unreachable says the replica could not be reached at all, so the
// attempt put no load on it.
func unreachable(err error) bool { return errors.Is(err, backend.ErrUnavailable) }

// turnedAway says whether a replica refused a request for its load: its
// admission queue (here or, over a forward, busy or rate-limited answers)
// or its Ollama was full.
func turnedAway(err error) bool {
	return errors.Is(err, admit.ErrKeyOverShare) || errors.Is(err, admit.ErrSaturated) ||
		errors.Is(err, admit.ErrTimeout) || errors.Is(err, admit.ErrWaitTooLong) ||
		errors.Is(err, backend.ErrOverloaded) || errors.Is(err, backend.ErrRateLimited)
}

// retryBudget caps retries at a share of requests, so a failing cluster
// is not hit by a multiple of its traffic: every request earns a fifth
// of a retry, up to a burst of ten.
type retryBudget struct {
	mu     sync.Mutex
	tokens float64
}

const (
	retryEarn  = 0.2
	retryBurst = 10
)

func (b *retryBudget) earn() {
	b.mu.Lock()
	b.tokens = min(retryBurst, b.tokens+retryEarn)
	b.mu.Unlock()
}

func (b *retryBudget) spend() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
