package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sovra/sovra/internal/bench"
	"github.com/sovra/sovra/internal/ollamasim"
)

// dispatcher sends one chat where its policy puts it and returns the
// sample and the answer's text.
type dispatcher interface {
	do(ctx context.Context, msgs []chatMessage, stream bool, arrival time.Time) (bench.RouteSample, string)
}

// fixedDispatch sends every request to one address: the proxy, or the
// one entry node.
type fixedDispatch struct {
	x     *matrixRunner
	addr  string
	model string
}

func (f fixedDispatch) do(ctx context.Context, msgs []chatMessage, stream bool, arrival time.Time) (bench.RouteSample, string) {
	return f.x.send(ctx, f.addr, matrixBody(f.model, msgs, stream), stream, arrival)
}

// rrDispatch sends requests to its addresses in turn: the sovra nodes,
// or lc-rr's least-connections proxies.
type rrDispatch struct {
	x     *matrixRunner
	addrs []string
	model string
	next  atomic.Uint64
}

func (r *rrDispatch) do(ctx context.Context, msgs []chatMessage, stream bool, arrival time.Time) (bench.RouteSample, string) {
	addr := r.addrs[(r.next.Add(1)-1)%uint64(len(r.addrs))]
	return r.x.send(ctx, addr, matrixBody(r.model, msgs, stream), stream, arrival)
}

// oracleDispatch sends straight to the simulators where the oracle says,
// holding requests back in the oracle's queues. It knows each
// simulator's prompt cache, so a request's service time on each is exact.
type oracleDispatch struct {
	x      *matrixRunner
	o      *bench.Oracle
	caches *bench.PrefixCaches
	ids    atomic.Uint64
	mu     sync.Mutex
	wait   map[uint64]chan struct{}
}

func newOracleDispatch(x *matrixRunner) *oracleDispatch {
	return &oracleDispatch{x: x, o: bench.NewOracle(x.setup.slots()), caches: bench.NewPrefixCaches(len(x.setup.Nodes)),
		wait: map[uint64]chan struct{}{}}
}

func (d *oracleDispatch) do(ctx context.Context, msgs []chatMessage, stream bool, arrival time.Time) (bench.RouteSample, string) {
	s := d.x.setup
	p := promptOf(msgs)
	service := make([]time.Duration, len(s.Nodes))
	for i, n := range s.Nodes {
		service[i] = n.service(s.AnswerTokens, p.Total(), d.caches.Cached(i, p))
	}
	id := d.ids.Add(1)
	ch := make(chan struct{})
	d.mu.Lock()
	d.wait[id] = ch
	d.mu.Unlock()
	srv, now := d.o.Assign(id, arrival, service)
	if now {
		d.release(id)
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return bench.RouteSample{Err: "interrupted in the oracle's queue"}, ""
	}
	dispatched := time.Now()
	sample, answer := d.x.send(ctx, d.x.rig.simAddrs[srv], matrixBody(simModel, msgs, stream), stream, arrival)
	if sample.OK() {
		d.caches.Remember(srv, promptOf(append(msgs[:len(msgs):len(msgs)], chatMessage{Role: "assistant", Content: answer})))
	}
	if next, ok := d.o.Finish(srv, id, time.Now()); ok {
		d.release(next)
	}
	sample.Node, sample.Queue, sample.HasQueue, sample.Route = s.Nodes[srv].ID, dispatched.Sub(arrival), true, policyOracle
	return sample, answer
}

func (d *oracleDispatch) release(id uint64) {
	d.mu.Lock()
	ch := d.wait[id]
	delete(d.wait, id)
	d.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// promptOf is a chat's prompt as the simulator's prefix cache counts it.
func promptOf(msgs []chatMessage) bench.Prompt {
	texts := make([]string, len(msgs))
	tokens := make([]int, len(msgs))
	for i, m := range msgs {
		texts[i] = m.Role + "\x00" + m.Content
		tokens[i] = messageOverhead + ollamasim.CountTokens(m.Content)
	}
	return bench.NewPrompt(texts, tokens)
}

// matrixBody is an /api/chat request body.
func matrixBody(model string, msgs []chatMessage, stream bool) []byte {
	b, _ := json.Marshal(struct {
		Model    string        `json:"model"`
		Messages []chatMessage `json:"messages"`
		Stream   bool          `json:"stream"`
	}{model, msgs, stream})
	return b
}

// send posts one chat to addr and reads the answer to its end; the times
// are taken from arrival. A streamed answer's TTFT is its first text; an
// answer that is not streamed has none.
func (x *matrixRunner) send(ctx context.Context, addr string, body []byte, stream bool, arrival time.Time) (bench.RouteSample, string) {
	var s bench.RouteSample
	ctx, cancel := context.WithTimeout(ctx, x.m.base.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+chatPath, strings.NewReader(string(body)))
	if err != nil {
		s.Err = err.Error()
		return s, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+x.rig.adminToken)
	resp, err := x.hc.Do(req)
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
	if !stream {
		return readUnary(resp.Body, s, arrival)
	}
	c := &collector{collect: true}
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

// readUnary reads a chat answer that is not streamed: one JSON object.
func readUnary(body io.Reader, s bench.RouteSample, arrival time.Time) (bench.RouteSample, string) {
	var m struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		Done  bool            `json:"done"`
		Error json.RawMessage `json:"error"`
	}
	err := json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(&m)
	s.Latency = time.Since(arrival)
	switch {
	case err != nil:
		s.Err = shortErr(err)
	case len(m.Error) > 0 && string(m.Error) != "null":
		s.Err = "error: " + string(m.Error)
	case !m.Done || m.Message.Content == "":
		s.Err = "answer not done or empty"
	}
	return s, m.Message.Content
}

// matrixWork is one run's load.
type matrixWork struct {
	x      *matrixRunner
	c      *matrixCell
	d      dispatcher
	salt   string
	seed   uint64
	stream bool
	// span is how long arrivals go on; from is where the measured
	// window starts within it.
	span, from time.Duration
	began      time.Time
	maxLag     time.Duration
}

// singles sends a Poisson stream of single requests over the span.
func (w *matrixWork) singles(ctx context.Context) []bench.RouteSample {
	f := &w.x.m.base
	offsets := bench.Poisson{Rate: w.c.Rate, Duration: w.span, MaxArrivals: f.maxRequests, Seed: w.seed}.Offsets()
	samples := make([]bench.RouteSample, len(offsets))
	var system []chatMessage
	if w.c.Prompts == mixShared {
		system = []chatMessage{{Role: "system", Content: words(f.systemWords, w.salt, 0)}}
	}
	var wg sync.WaitGroup
	w.began = time.Now().Add(time.Millisecond)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sent := 0
	for i, off := range offsets {
		at := w.began.Add(off)
		if !bench.WaitUntil(ctx, timer, at) {
			break
		}
		arrival := time.Now()
		w.maxLag = max(w.maxLag, arrival.Sub(at))
		sent++
		msgs := append(system[:len(system):len(system)], chatMessage{Role: "user", Content: w.salt + " " + words(f.promptWords-1, base36(i), 0)})
		if w.c.Prompts == mixSame {
			msgs = []chatMessage{{Role: "user", Content: words(f.systemWords, w.salt, 0)}}
		}
		wg.Go(func() {
			s, _ := w.d.do(ctx, msgs, w.stream, arrival)
			s.Conv, s.Start = -1, off
			samples[i] = s
		})
	}
	wg.Wait()
	return samples[:sent]
}

// conversations sends conversations arriving as a Poisson stream over the
// span; each sends its turns one after the other with a think time
// between them, every turn carrying the history. No turn starts after the
// span.
func (w *matrixWork) conversations(ctx context.Context) []bench.RouteSample {
	f := &w.x.m.base
	offsets := bench.Poisson{Rate: w.c.ConvRate, Duration: w.span, MaxArrivals: f.maxRequests, Seed: w.seed}.Offsets()
	system := chatMessage{Role: "system", Content: words(f.systemWords, w.salt, 0)}
	convs := make([][]bench.RouteSample, len(offsets))
	w.began = time.Now().Add(time.Millisecond)
	stopAt := w.began.Add(w.span)
	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	started := 0
	for c, off := range offsets {
		at := w.began.Add(off)
		if !bench.WaitUntil(ctx, timer, at) {
			break
		}
		w.maxLag = max(w.maxLag, time.Since(at))
		started++
		wg.Go(func() { convs[c] = w.conversation(ctx, c, system, stopAt) })
	}
	wg.Wait()
	var out []bench.RouteSample
	for _, cs := range convs[:started] {
		out = append(out, cs...)
	}
	return out
}

// conversation runs conversation c's turns until the last one or stopAt.
func (w *matrixWork) conversation(ctx context.Context, c int, system chatMessage, stopAt time.Time) []bench.RouteSample {
	f := &w.x.m.base
	rng := rand.New(rand.NewPCG(w.seed, uint64(c)))
	history := []chatMessage{system}
	var out []bench.RouteSample
	for k := range f.turns {
		if k > 0 && sleepCtx(ctx, bench.Exp(rng, f.think)) != nil {
			return out
		}
		now := time.Now()
		if !now.Before(stopAt) {
			return out
		}
		msgs := append(history[:len(history):len(history)], chatMessage{Role: "user", Content: turnText(w.salt, c, k, f.userWords)})
		s, answer := w.d.do(ctx, msgs, w.stream, now)
		s.Conv, s.Turn, s.Start = c, k, now.Sub(w.began)
		out = append(out, s)
		if !s.OK() {
			return out
		}
		history = append(msgs, chatMessage{Role: "assistant", Content: answer})
	}
	return out
}
