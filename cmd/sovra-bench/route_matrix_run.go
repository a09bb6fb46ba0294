package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sovra/sovra/internal/bench"
)

// matrixRunner runs the cells of one backend set: its simulators, the
// least-connections proxies over them, and a sovra cluster while one runs.
type matrixRunner struct {
	m     *matrixFlags
	set   string
	rig   *routeRig
	setup routeSetup
	hc    *http.Client

	// lc is the least-connections proxy that sees every request;
	// lcRR the proxies of lc-rr, one per node, each counting only the
	// requests it forwarded (nil: not started).
	lc   *lcServer
	lcRR []*lcServer

	// entries are the running sovra cluster's nodes (nil: none runs).
	entries []entry
}

func newMatrixRunner(m *matrixFlags, set string, r *routeRig) *matrixRunner {
	x := &matrixRunner{m: m, set: set, rig: r, setup: r.setup, hc: &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 2048,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}}
	return x
}

// lcServer is one least-connections proxy over the simulators, on its
// own loopback port.
type lcServer struct {
	proxy *bench.LeastConnProxy
	srv   *http.Server
	addr  string
	errc  chan error
}

// startLCProxy starts a least-connections proxy over the simulators on a
// loopback port, with counts of its own.
func (x *matrixRunner) startLCProxy() (*lcServer, error) {
	var urls []*url.URL
	for _, addr := range x.rig.simAddrs {
		urls = append(urls, &url.URL{Scheme: "http", Host: addr})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := bench.NewLeastConnProxy(hdrNode, x.setup.ids(), urls)
	l := &lcServer{proxy: p, srv: &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String(), errc: make(chan error, 1)}
	go func() { l.errc <- l.srv.Serve(ln) }()
	return l, nil
}

func (l *lcServer) stop() {
	_ = l.srv.Close()
	if err := <-l.errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		progress("least-connections proxy %s: %v", l.addr, err)
	}
}

// startLC starts the least-connections proxy that sees every request.
func (x *matrixRunner) startLC() error {
	if x.lc != nil {
		return nil
	}
	l, err := x.startLCProxy()
	x.lc = l
	return err
}

// startLCRR starts the proxies of lc-rr: one per node, as a
// least-connections balancer on each host behind round-robin DNS would
// run, each knowing only the connections it opened itself.
func (x *matrixRunner) startLCRR() error {
	if x.lcRR != nil {
		return nil
	}
	for range x.rig.simAddrs {
		l, err := x.startLCProxy()
		if err != nil {
			return err
		}
		x.lcRR = append(x.lcRR, l)
	}
	return nil
}

// lcRRAddrs are the addresses of lc-rr's proxies.
func (x *matrixRunner) lcRRAddrs() []string {
	out := make([]string, len(x.lcRR))
	for i, l := range x.lcRR {
		out[i] = l.addr
	}
	return out
}

// close stops the proxies.
func (x *matrixRunner) close() {
	if x.lc != nil {
		x.lc.stop()
		x.lc = nil
	}
	for _, l := range x.lcRR {
		l.stop()
	}
	x.lcRR = nil
}

// cells are the backend set's cells, in the order they run.
func (x *matrixRunner) cells() []*matrixCell {
	var out []*matrixCell
	for _, req := range x.m.requests {
		for _, mix := range x.m.mixes {
			for _, load := range x.m.loads {
				c := &matrixCell{Backends: x.set, Speeds: x.m.speeds[x.set], Request: req, Prompts: mix, Load: load,
					seed: x.m.base.seed + uint64(len(out))}
				c.Rate, c.ConvRate = x.rate(mix, load)
				out = append(out, c)
			}
		}
	}
	return out
}

// nominal is each node's service time of a request of mix, its usual
// prefix cached (the system prompt, a conversation's history).
func (x *matrixRunner) nominal(mix string) map[string]time.Duration {
	s := x.setup
	out := map[string]time.Duration{}
	for _, n := range s.Nodes {
		switch mix {
		case mixShared:
			out[n.ID] = n.service(s.AnswerTokens, s.SystemTokens+s.PromptTokens, s.SystemTokens)
		case mixSame:
			out[n.ID] = n.service(s.AnswerTokens, s.SystemTokens, s.SystemTokens)
		case mixMultiTurn:
			out[n.ID] = n.MTService
		default:
			out[n.ID] = n.Service
		}
	}
	return out
}

func (x *matrixRunner) slotsByID() map[string]int {
	out := map[string]int{}
	for _, n := range x.setup.Nodes {
		out[n.ID] = n.Slots
	}
	return out
}

// rate is the arrival rate of requests at load percent of the mix's
// capacity, and for multiturn the rate of conversations.
func (x *matrixRunner) rate(mix string, load float64) (reqs, convs float64) {
	s := x.setup
	switch mix {
	case mixShared, mixSame:
		capacity := 0.0
		for id, svc := range x.nominal(mix) {
			capacity += float64(x.slotsByID()[id]) / svc.Seconds()
		}
		return load / 100 * capacity, 0
	case mixMultiTurn:
		convs = s.convRate(load, s.Turns)
		return convs * float64(s.Turns), convs
	}
	return s.rate(load), 0
}

// withCluster starts a sovra cluster running policy, warms it up, runs fn
// and stops the cluster.
func (x *matrixRunner) withCluster(ctx context.Context, policy string, fn func() error) error {
	entries, err := x.rig.startCluster(ctx, policy)
	defer func() {
		x.rig.stopCluster()
		x.entries = nil
	}()
	if err != nil {
		return err
	}
	x.entries = entries
	if w := x.m.clusterWarmup; w > 0 {
		progress("%-9s warm-up: unique streamed chats at 50%% for %s, round-robin over the nodes", policy, w)
		warm := &matrixCell{Backends: x.set, Request: reqStream, Prompts: mixUnique, Load: 50, seed: x.m.base.seed + 999}
		warm.Rate, _ = x.rate(mixUnique, 50)
		if _, err := x.run(ctx, warm, policy, entryRR, w, warm.seed); err != nil {
			return err
		}
	}
	return fn()
}

// runAll runs every cell: the baselines, then sovra's policy (when
// not empty) through each entry pattern.
func (x *matrixRunner) runAll(ctx context.Context, cells []*matrixCell, baselines []string, sovra string) error {
	for _, pol := range baselines {
		var err error
		switch pol {
		case policyLCProxy:
			err = x.startLC()
		case policyLCEntry:
			err = x.startLCRR()
		}
		if err != nil {
			return err
		}
	}
	for _, c := range cells {
		for round := range x.m.rounds {
			for _, pol := range baselines {
				if err := x.runInto(ctx, c, pol, "", round); err != nil {
					return err
				}
			}
			if sovra == "" {
				continue
			}
			for _, e := range x.m.entries {
				if err := x.runInto(ctx, c, sovra, e, round); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// runInto runs one round of a policy in cell c and pools it with the
// policy's earlier rounds there.
func (x *matrixRunner) runInto(ctx context.Context, c *matrixCell, policy, entry string, round int) error {
	progress("%s: %s%s, round %d of %d", c.label(), policy, entryLabel(entry), round+1, x.m.rounds)
	span := x.m.warmup + x.m.duration/time.Duration(x.m.rounds)
	var r *matrixRun
	for try := 0; ; try++ {
		var err error
		if r, err = x.run(ctx, c, policy, entry, span, c.seed+uint64(round)*7919); err != nil {
			return err
		}
		r.logSummary()
		if r.MaxLag <= x.m.maxLag || try >= x.m.redo {
			break
		}
		progress("  discarded: the load generator started a request %s late (the machine was short of CPU); again", fmtDur(r.MaxLag))
		r.Redone++
	}
	if err := x.dump(c, r); err != nil {
		return err
	}
	for _, old := range c.Runs {
		if old.Policy == policy && old.Entry == entry {
			old.pool(r)
			return nil
		}
	}
	c.Runs = append(c.Runs, r)
	return nil
}

// dump writes the run's samples into the --dump directory, if any.
func (x *matrixRunner) dump(c *matrixCell, r *matrixRun) error {
	if x.m.dump == "" {
		return nil
	}
	name := strings.NewReplacer(" ", "-", "%", "").Replace(fmt.Sprintf("%s-%s-%s-%s.json", c.label(), r.Policy, r.Entry, x.rig.nextSalt()))
	b, err := json.Marshal(r.samples)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(x.m.dump, name), b, 0o644)
}

func entryLabel(entry string) string {
	if entry == "" {
		return ""
	}
	return " (entry " + entry + ")"
}

// run sends one policy's load of cell c for span (the warm-up and the
// window), waits for every answer and reads the simulators' logs. Only
// what arrives after the warm-up and within the window is measured.
func (x *matrixRunner) run(ctx context.Context, c *matrixCell, policy, entry string, span time.Duration, seed uint64) (*matrixRun, error) {
	if err := x.rig.waitIdle(ctx); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, x.m.base.settle); err != nil {
		return nil, err
	}
	d, err := x.dispatcher(policy, entry)
	if err != nil {
		return nil, err
	}
	w := &matrixWork{x: x, c: c, d: d, salt: x.rig.nextSalt(), span: span, seed: seed,
		from: min(x.m.warmup, span/2), stream: c.Request == reqStream}
	var samples []bench.RouteSample
	if c.Prompts == mixMultiTurn {
		samples = w.conversations(ctx)
	} else {
		samples = w.singles(ctx)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	run := &matrixRun{Policy: policy, Entry: entry, MaxLag: w.maxLag}
	run.samples = measured(samples, w.from, span)
	run.Figures = bench.SummarizeRoute(run.samples)
	run.Misrouted, run.Regret = bench.Misroutes(run.samples, x.nominal(c.Prompts), x.slotsByID())
	if run.Sim, err = x.simFigures(ctx, c, w.began.Add(w.from), w.began.Add(span)); err != nil {
		return nil, err
	}
	if entry != "" {
		run.Learned = x.learned(ctx)
	}
	return run, x.rig.checkAlive()
}

// learned is what the first sovra node has learned of each replica after
// a run, by node: the service time it estimates (its measured time to
// first token plus the answer's decode time, in milliseconds), the cost
// of an uncached KiB of prompt and the average uncached prompt.
func (x *matrixRunner) learned(ctx context.Context) map[string]learnedReplica {
	var v struct {
		Replicas []struct {
			Node            string  `json:"node"`
			TTFTMs          float64 `json:"ttft_ms"`
			TokensPerSec    float64 `json:"tokens_per_sec"`
			OutTokens       float64 `json:"out_tokens"`
			PrefillMsPerKiB float64 `json:"prefill_ms_per_kib"`
			PromptKiB       float64 `json:"prompt_kib"`
		} `json:"replicas"`
	}
	if st, _, err := x.rig.adminCall(ctx, http.MethodGet, x.entries[0].addr, "/admin/v1/routing", nil, &v); err != nil || st != http.StatusOK {
		return nil
	}
	out := map[string]learnedReplica{}
	for _, r := range v.Replicas {
		l := learnedReplica{ServiceMs: r.TTFTMs, PrefillMsPerKiB: r.PrefillMsPerKiB, PromptKiB: r.PromptKiB}
		if r.TokensPerSec > 0 {
			l.ServiceMs += r.OutTokens / r.TokensPerSec * 1000
		}
		out[r.Node] = l
	}
	return out
}

// learnedReplica is what a sovra node learned of one replica.
type learnedReplica struct {
	ServiceMs       float64 `json:"service_ms"`
	PrefillMsPerKiB float64 `json:"prefill_ms_per_kib,omitempty"`
	PromptKiB       float64 `json:"prompt_kib,omitempty"`
}

// measured are the samples that started within [from, to).
func measured(samples []bench.RouteSample, from, to time.Duration) []bench.RouteSample {
	var out []bench.RouteSample
	for _, s := range samples {
		if s.Start >= from && s.Start < to {
			out = append(out, s)
		}
	}
	return out
}

// dispatcher returns what sends a request for policy.
func (x *matrixRunner) dispatcher(policy, entry string) (dispatcher, error) {
	switch policy {
	case policyOracle:
		return newOracleDispatch(x), nil
	case policyLCProxy:
		if err := x.startLC(); err != nil {
			return nil, err
		}
		return fixedDispatch{x: x, addr: x.lc.addr, model: simModel}, nil
	case policyLCEntry:
		if err := x.startLCRR(); err != nil {
			return nil, err
		}
		return &rrDispatch{x: x, addrs: x.lcRRAddrs(), model: simModel}, nil
	}
	if len(x.entries) == 0 {
		return nil, fmt.Errorf("%s: no sovra cluster runs", policy)
	}
	if entry == entryOne {
		return fixedDispatch{x: x, addr: x.entries[x.m.entryNode-1].addr, model: deployment}, nil
	}
	addrs := make([]string, len(x.entries))
	for i, e := range x.entries {
		addrs[i] = e.addr
	}
	return &rrDispatch{x: x, addrs: addrs, model: deployment}, nil
}

// handoffGap bounds the idle time between two requests on one slot
// that counts as a handoff: the next request was waiting (in a queue in
// front of the backend) when the previous one ended.
const handoffGap = 20 * time.Millisecond

// handoffs sums, over the requests that started within [from, to), the
// idle times shorter than handoffGap between a request's end and the
// next one's start on the simulator, and counts them (one slot).
func handoffs(recs []simRecord, from, to time.Time) (time.Duration, int) {
	slices.SortFunc(recs, func(a, b simRecord) int { return a.Start.Compare(b.Start) })
	var sum time.Duration
	n := 0
	for i := 1; i < len(recs); i++ {
		if recs[i].Start.Before(from) || !recs[i].Start.Before(to) {
			continue
		}
		if gap := recs[i].Start.Sub(recs[i-1].End); gap >= 0 && gap < handoffGap {
			sum += gap
			n++
		}
	}
	return sum, n
}

// simFigures reads what the simulators logged of the requests that
// started there within [from, to): requests per node, waits for a slot,
// and the prompt cache's hits and what they saved.
func (x *matrixRunner) simFigures(ctx context.Context, c *matrixCell, from, to time.Time) (matrixSim, error) {
	sf := matrixSim{Requests: map[string]int{}}
	s := x.setup
	firstTurn := s.SystemTokens + s.UserTokens
	var saved, gaps time.Duration
	for i, n := range s.Nodes {
		recs, err := x.rig.simRecords(ctx, i)
		if err != nil {
			return sf, err
		}
		g, k := handoffs(recs, from, to)
		gaps += g
		sf.Handoffs += k
		for _, rec := range recs {
			if rec.Start.Before(from) || !rec.Start.Before(to) || rec.Outcome != "ok" {
				continue
			}
			sf.Requests[n.ID]++
			if rec.FirstChunk-n.prefill(rec.PromptTokens, rec.CachedTokens) > simQueueThreshold {
				sf.Queued++
			}
			switch c.Prompts {
			case mixMultiTurn:
				if rec.PromptTokens <= firstTurn {
					continue
				}
				sf.FollowUps++
				if rec.CachedTokens >= rec.PromptTokens-s.UserTokens {
					sf.Hits++
				}
				saved += max(0, n.prefill(rec.PromptTokens, s.SystemTokens)-n.prefill(rec.PromptTokens, rec.CachedTokens))
			case mixShared, mixSame:
				sf.FollowUps++
				if rec.CachedTokens >= min(s.SystemTokens, rec.PromptTokens-1) {
					sf.Hits++
				}
			}
		}
	}
	if sf.Handoffs > 0 {
		sf.Handoff = gaps / time.Duration(sf.Handoffs)
	}
	if sf.FollowUps > 0 && c.Prompts == mixMultiTurn {
		sf.Saved = saved / time.Duration(sf.FollowUps)
	}
	return sf, nil
}
