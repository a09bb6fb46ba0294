package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sovra/sovra/internal/bench"
)

// Response headers sovra puts on every inference answer.
const (
	hdrNode     = "Sovra-Node"
	hdrQueue    = "Sovra-Queue-Ms"
	hdrRoute    = "Sovra-Route"
	hdrAttempts = "Sovra-Attempts"
)

// simQueueThreshold is how much longer than its prefill a request's first
// token may take at the simulator before it counts as having waited there
// for a slot (scheduling jitter on a busy machine stays below it).
const simQueueThreshold = 10 * time.Millisecond

// entry is a place the load sends requests to: a sovra node, or a
// simulator for the oracle.
type entry struct {
	name  string
	addr  string
	model string
}

// directEntries are the simulators, for the oracle.
func directEntries(r *routeRig) []entry {
	out := make([]entry, len(r.simAddrs))
	for i, addr := range r.simAddrs {
		out[i] = entry{name: r.setup.Nodes[i].ID, addr: addr, model: simModel}
	}
	return out
}

// driver sends one policy's load.
type driver struct {
	f       *routeFlags
	setup   routeSetup
	rig     *routeRig
	policy  string
	entries []entry
	// oracle is set for the oracle policy: it then chooses the simulator
	// and holds requests back in its own queues.
	oracle *bench.Oracle

	hc     *http.Client
	once   sync.Once
	next   atomic.Uint64 // round-robin over the entries
	ids    atomic.Uint64
	waitMu sync.Mutex
	wait   map[uint64]chan struct{} // oracle requests held back, by id
}

func (d *driver) client() *http.Client {
	d.once.Do(func() {
		d.hc = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 2048,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}}
		d.wait = map[uint64]chan struct{}{}
	})
	return d.hc
}

// newDriver returns the driver of policy over entries.
func (r *routeRig) newDriver(policy string, entries []entry) *driver {
	d := &driver{f: r.f, setup: r.setup, rig: r, policy: policy, entries: entries}
	if policy == policyOracle {
		d.oracle = bench.NewOracle(r.setup.slots())
	}
	return d
}

// pick returns the next entry in round-robin order, as a plain load
// balancer in front of the nodes would.
func (d *driver) pick() entry {
	return d.entries[(d.next.Add(1)-1)%uint64(len(d.entries))]
}

// point sends a Poisson stream of single-turn chats at load percent of
// capacity for dur, waits for every answer and reads the simulators'
// logs.
func (d *driver) point(ctx context.Context, load float64, dur time.Duration, seed uint64) (*routePoint, error) {
	if err := d.rig.waitIdle(ctx); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, d.f.settle); err != nil {
		return nil, err
	}
	sched := bench.Poisson{Rate: d.setup.rate(load), Duration: dur, MaxArrivals: d.f.maxRequests, Seed: seed}
	offsets := sched.Offsets()
	salt := d.rig.nextSalt()
	samples := make([]bench.RouteSample, len(offsets))
	var wg sync.WaitGroup
	began := time.Now().Add(time.Millisecond)
	var maxLag time.Duration
	sent := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i, off := range offsets {
		at := began.Add(off)
		if !bench.WaitUntil(ctx, timer, at) {
			break
		}
		arrival := time.Now()
		maxLag = max(maxLag, arrival.Sub(at))
		sent++
		body := singleBody(d.entryModel(), salt, i, d.f.promptWords)
		wg.Go(func() { samples[i] = d.single(ctx, body, arrival) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	elapsed := time.Since(began)
	p := &routePoint{Policy: d.policy, Load: load, Rate: sched.Rate, Elapsed: elapsed, MaxLag: maxLag,
		samples: samples[:sent]}
	p.Figures = bench.SummarizeRoute(p.samples)
	var err error
	if p.Sim, err = d.simFigures(ctx, false); err != nil {
		return nil, err
	}
	p.setShares(d.setup, d.policy == policyOracle)
	return p, d.rig.checkAlive()
}

func (d *driver) entryModel() string {
	if d.oracle != nil {
		return simModel
	}
	return deployment
}

// single sends one single-turn chat that arrived at arrival: through the
// next sovra node, or where the oracle puts it.
func (d *driver) single(ctx context.Context, body []byte, arrival time.Time) bench.RouteSample {
	if d.oracle == nil {
		s, _ := d.send(ctx, d.pick(), body, arrival, false)
		s.Conv = -1
		return s
	}
	service := make([]time.Duration, len(d.setup.Nodes))
	for i, n := range d.setup.Nodes {
		service[i] = n.Service
	}
	id := d.ids.Add(1)
	ch := make(chan struct{})
	d.client()
	d.waitMu.Lock()
	d.wait[id] = ch
	d.waitMu.Unlock()
	srv, now := d.oracle.Assign(id, arrival, service)
	if now {
		d.release(id)
	} else {
		select {
		case <-ch:
		case <-ctx.Done():
			return bench.RouteSample{Conv: -1, Err: "interrupted in the oracle's queue"}
		}
	}
	dispatched := time.Now()
	s, _ := d.send(ctx, d.entries[srv], body, arrival, false)
	if next, ok := d.oracle.Finish(srv, id, time.Now()); ok {
		d.release(next)
	}
	s.Node, s.Queue, s.HasQueue, s.Route, s.Conv = d.entries[srv].name, dispatched.Sub(arrival), true, policyOracle, -1
	return s
}

// release lets the held-back oracle request id go.
func (d *driver) release(id uint64) {
	d.waitMu.Lock()
	ch := d.wait[id]
	delete(d.wait, id)
	d.waitMu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// send posts one streaming chat to e and reads the stream to its end. The
// times are taken from arrival. With collect, it returns the answer's
// text, for the conversation's history.
func (d *driver) send(ctx context.Context, e entry, body []byte, arrival time.Time, collect bool) (bench.RouteSample, string) {
	var s bench.RouteSample
	ctx, cancel := context.WithTimeout(ctx, d.f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.addr+chatPath, strings.NewReader(string(body)))
	if err != nil {
		s.Err = err.Error()
		return s, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+d.rig.adminToken)
	resp, err := d.client().Do(req)
	if err != nil {
		s.Err = shortErr(err)
		return s, ""
	}
	defer resp.Body.Close()
	readHeaders(&s, resp.Header)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		s.Err = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		return s, ""
	}
	c := &collector{collect: collect}
	err = bench.ReadLines(bufio.NewReaderSize(resp.Body, 16<<10), c, func() { s.TTFT = time.Since(arrival) })
	s.Latency = time.Since(arrival)
	switch {
	case err != nil:
		s.Err = shortErr(err)
	case c.errText != "":
		s.Err = "in-band error: " + c.errText
	case !c.Complete():
		s.Err = fmt.Sprintf("stream ended without done after %d events", c.Events())
	case s.TTFT == 0:
		s.Err = "stream carried no text"
	}
	return s, c.text.String()
}

// readHeaders copies sovra's routing headers into s.
func readHeaders(s *bench.RouteSample, h http.Header) {
	s.Node = h.Get(hdrNode)
	s.Route = h.Get(hdrRoute)
	if v := h.Get(hdrQueue); v != "" {
		if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q >= 0 {
			s.Queue, s.HasQueue = time.Duration(q*float64(time.Millisecond)), true
		}
	}
	if v := h.Get(hdrAttempts); v != "" {
		s.Attempts, _ = strconv.Atoi(strings.TrimSpace(v))
	}
}

func shortErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	return err.Error()
}

var errorKey = []byte(`"error"`)

// collector counts an NDJSON chat stream's events and, with collect, keeps
// its text; it notes an in-band error.
type collector struct {
	bench.NDJSONCounter
	collect bool
	text    strings.Builder
	errText string
}

// Line implements bench.EventCounter.
func (c *collector) Line(line []byte) bool {
	first := c.NDJSONCounter.Line(line)
	if c.collect || (c.errText == "" && bytes.Contains(line, errorKey)) {
		var m struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(line, &m) == nil {
			c.text.WriteString(m.Message.Content)
			if len(m.Error) > 0 && string(m.Error) != "null" && c.errText == "" {
				c.errText = string(m.Error)
			}
		}
	}
	return first
}

// simFigures reads the simulators' logs of the chats since their last
// reset: requests per node, those that waited at the simulator for a
// slot, and (for the multi-turn workload) follow-ups that found their
// history in the prefix cache.
func (d *driver) simFigures(ctx context.Context, mt bool) (simFigures, error) {
	sf := simFigures{Requests: map[string]int{}}
	var waited time.Duration
	firstTurn := d.setup.SystemTokens + d.setup.UserTokens
	for i, n := range d.setup.Nodes {
		recs, err := d.rig.simRecords(ctx, i)
		if err != nil {
			return sf, err
		}
		for _, rec := range recs {
			sf.Requests[n.ID]++
			if rec.Outcome != "ok" {
				continue
			}
			if w := rec.FirstChunk - n.prefill(rec.PromptTokens, rec.CachedTokens); w > simQueueThreshold {
				sf.Queued++
				waited += w
				sf.QueueMax = max(sf.QueueMax, w)
			}
			switch {
			case mt && rec.PromptTokens > firstTurn:
				sf.FollowUps++
				if rec.CachedTokens >= rec.PromptTokens-d.setup.UserTokens {
					sf.CacheHits++
				}
			case !mt && (rec.PromptTokens != d.setup.PromptTokens || rec.CachedTokens != 0):
				sf.Unexpected++
			}
		}
	}
	if sf.Queued > 0 {
		sf.QueueMean = waited / time.Duration(sf.Queued)
	}
	return sf, nil
}

// conversations runs the multi-turn workload: conversations arrive as a
// Poisson stream; each sends its turns one after the other, with a think
// time between them, every turn carrying the whole history so far.
func (d *driver) conversations(ctx context.Context) (*convPoint, error) {
	if err := d.rig.waitIdle(ctx); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, d.f.settle); err != nil {
		return nil, err
	}
	f := d.f
	rate := d.setup.convRate(f.mtLoad, f.turns)
	offsets := bench.Poisson{Rate: rate, Duration: f.mtDuration, MaxArrivals: f.maxRequests, Seed: f.seed + 500}.Offsets()
	salt := d.rig.nextSalt()
	system := chatMessage{Role: "system", Content: words(f.systemWords, "sys", 0)}
	convs := make([][]bench.RouteSample, len(offsets))
	var cut atomic.Int64
	began := time.Now().Add(time.Millisecond)
	stopAt := began.Add(f.mtDuration + f.mtDrain)
	var wg sync.WaitGroup
	started := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for c, off := range offsets {
		if !bench.WaitUntil(ctx, timer, began.Add(off)) {
			break
		}
		started++
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(f.seed, uint64(c)))
			history := []chatMessage{system}
			for k := range f.turns {
				if k > 0 {
					if sleepCtx(ctx, bench.Exp(rng, f.think)) != nil {
						return
					}
				}
				if time.Now().After(stopAt) {
					cut.Add(1)
					return
				}
				user := chatMessage{Role: "user", Content: turnText(salt, c, k, f.userWords)}
				msgs := append(history[:len(history):len(history)], user)
				body := chatRequest(deployment, msgs)
				now := time.Now()
				s, answer := d.send(ctx, d.pick(), body, now, true)
				s.Conv, s.Turn, s.Start = c, k, now.Sub(began)
				convs[c] = append(convs[c], s)
				if !s.OK() {
					return
				}
				history = append(msgs, chatMessage{Role: "assistant", Content: answer})
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var samples []bench.RouteSample
	for _, cs := range convs[:started] {
		samples = append(samples, cs...)
	}
	slices.SortFunc(samples, func(a, b bench.RouteSample) int { return cmp.Compare(a.Start, b.Start) })
	cp := &convPoint{Policy: d.policy, ConvRate: rate, Rate: rate * float64(f.turns), Conversations: started,
		Cut: int(cut.Load()), Elapsed: time.Since(began), samples: samples}
	cp.Figures = bench.SummarizeRoute(samples)
	cp.FollowUps, cp.SameNode = bench.Affinity(samples)
	var err error
	if cp.Sim, err = d.simFigures(ctx, true); err != nil {
		return nil, err
	}
	// Loads count the turns of the steady state: after the first
	// conversations have had time to reach their last turn, before new
	// ones stop arriving.
	ramp := time.Duration(f.turns-1)*f.think + time.Duration(f.turns)*d.setup.meanMTService()
	cp.SteadyFrom, cp.SteadyTo = min(ramp, f.mtDuration/2), f.mtDuration
	cp.setLoads(d.setup)
	return cp, d.rig.checkAlive()
}

// chatMessage is one message of a chat request.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatRequest is a streaming /api/chat request body.
func chatRequest(model string, msgs []chatMessage) []byte {
	b, _ := json.Marshal(struct {
		Model    string        `json:"model"`
		Messages []chatMessage `json:"messages"`
		Stream   bool          `json:"stream"`
	}{model, msgs, true})
	return b
}

// singleBody is the request of single-turn arrival i: one user message of
// n one-token words, the first two of which make it unique (so that no
// simulator finds it in its prefix cache).
func singleBody(model, salt string, i, n int) []byte {
	return chatRequest(model, []chatMessage{{Role: "user", Content: salt + " " + words(n-1, base36(i), 0)}})
}

// turnText is the user message of turn k of conversation c: n one-token
// words, the first three unique to the conversation and turn.
func turnText(salt string, c, k, n int) string {
	return salt + " " + base36(c) + " " + words(n-2, "t"+strconv.Itoa(k%100), k)
}

// filler are one-token words (four bytes at most) of the prompts.
var filler = strings.Fields(`tell me how the node set runs its work when many jobs come in at once and what
	each part does with the load so that all of it ends soon for each user who asks`)

// words returns first followed by n-1 filler words: n words of one token
// each when first has four bytes at most.
func words(n int, first string, shift int) string {
	if n <= 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(first)
	for i := 1; i < n; i++ {
		b.WriteByte(' ')
		b.WriteString(filler[(i+shift)%len(filler)])
	}
	return b.String()
}

// base36 writes i in four base-36 digits (one token).
func base36(i int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	i %= 36 * 36 * 36 * 36
	b := []byte("0000")
	for p := 3; p >= 0 && i > 0; p-- {
		b[p] = digits[i%36]
		i /= 36
	}
	return string(b)
}

// nextSalt is a word unique to each point of the run, so that no prompt
// repeats one of an earlier point.
func (r *routeRig) nextSalt() string {
	r.salts++
	return base36(r.salts)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
