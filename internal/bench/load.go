package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Kind is how the responses of a target are read.
type Kind int

const (
	// Unary responses are one JSON document.
	Unary Kind = iota
	// NDJSON responses are Ollama's newline-delimited JSON stream.
	NDJSON
	// SSE responses are an OpenAI server-sent event stream.
	SSE
)

func (k Kind) String() string {
	switch k {
	case NDJSON:
		return "ndjson"
	case SSE:
		return "sse"
	default:
		return "unary"
	}
}

// Target is one way of sending a chat request: a server, a path and a body.
type Target struct {
	// Name labels the target in reports.
	Name string
	// Client is a keep-alive client for the target's host. A streaming
	// target's client must have StreamResponseBody set.
	Client *fasthttp.HostClient
	// URL is the full request URL.
	URL string
	// Body is the JSON request body, sent with POST.
	Body []byte
	// Kind says how to read the response.
	Kind Kind
	// Expect, when set, must occur in a unary response body for the request
	// to count as successful.
	Expect []byte
	// Token, when set, is sent as a bearer token.
	Token string
}

// NewClient returns a keep-alive client for addr (host:port) that opens as
// many connections as the load needs. streaming makes responses readable
// as they arrive; timeout bounds each whole exchange.
func NewClient(addr string, streaming bool, timeout time.Duration) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                     addr,
		Name:                     "sovra-bench",
		MaxConns:                 4096,
		MaxIdleConnDuration:      time.Minute,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		ReadBufferSize:           16 << 10,
		StreamResponseBody:       streaming,
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: false,
	}
}

// Load is an open-loop schedule: requests start at fixed intervals whatever
// happens to the earlier ones, until Duration has passed or MaxRequests
// have started. With Clients set it is a closed loop instead: that many
// clients each send their next request as soon as the last one ended.
type Load struct {
	// Rate is the number of requests started per second (open loop).
	Rate float64
	// Clients is the number of clients of a closed loop; Rate is then
	// ignored.
	Clients int
	// Duration bounds the time over which requests start.
	Duration time.Duration
	// MaxRequests, when positive, bounds the number of requests.
	MaxRequests int
}

// Split is round i (from 0) of n rounds that together make l: each runs
// for an n-th of the time and starts an n-th of the requests at most (the
// first rounds one more, when they do not divide).
func (l Load) Split(n, i int) Load {
	if n <= 1 {
		return l
	}
	l.Duration /= time.Duration(n)
	if l.MaxRequests > 0 {
		share := l.MaxRequests / n
		if i < l.MaxRequests%n {
			share++
		}
		l.MaxRequests = max(share, 1)
	}
	return l
}

// Add merges o, a run of the same target under the same load, into r.
func (r *Result) Add(o *Result) {
	r.Sent += o.Sent
	r.OK += o.OK
	r.Errors += o.Errors
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	r.Latency = append(r.Latency, o.Latency...)
	r.TTFT = append(r.TTFT, o.TTFT...)
	r.Events += o.Events
	r.Streams += o.Streams
	r.Incomplete += o.Incomplete
	r.EventCounts = append(r.EventCounts, o.EventCounts...)
	r.Elapsed += o.Elapsed
	r.MaxLag = max(r.MaxLag, o.MaxLag)
}

// Count is the number of requests the schedule starts.
func (l Load) Count() int {
	if l.Rate <= 0 || l.Duration <= 0 {
		return 0
	}
	n := int(math.Round(l.Rate * l.Duration.Seconds()))
	if l.MaxRequests > 0 && n > l.MaxRequests {
		n = l.MaxRequests
	}
	return max(n, 1)
}

// Interval is the time between two request starts.
func (l Load) Interval() time.Duration {
	if l.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / l.Rate)
}

// Result is what one run of a target under a load measured.
type Result struct {
	Target string `json:"target"`
	// Sent is the number of requests started.
	Sent int `json:"sent"`
	// OK counts requests answered 200 with a well-formed response (for
	// streams: one that reached its end marker).
	OK         int    `json:"ok"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Latency holds, for each successful request, the time from sending it
	// to the last byte of the response. It is taken from the send rather
	// than from the scheduled start so that the pacer's timer jitter (see
	// MaxLag) does not blur the percentiles.
	Latency []time.Duration `json:"-"`
	// TTFT holds, for each successful stream, the time from sending it to
	// the first event carrying generated text.
	TTFT []time.Duration `json:"-"`
	// Events is the number of data events (SSE) or lines (NDJSON) received
	// before the end markers, over all streams answered 200.
	Events int `json:"events"`
	// Streams counts streamed responses answered 200; Incomplete those of
	// them that did not end with their end marker.
	Streams    int `json:"streams"`
	Incomplete int `json:"incomplete"`
	// EventCounts holds the event count of each stream answered 200.
	EventCounts []int `json:"-"`
	// Elapsed is the wall time of the run, from the first start to the
	// last response.
	Elapsed time.Duration `json:"elapsed_ns"`
	// MaxLag is how late the schedule started its latest request.
	MaxLag time.Duration `json:"max_lag_ns"`
}

// record is the outcome of one request.
type record struct {
	err      error
	latency  time.Duration
	ttft     time.Duration
	streamed bool
	events   int
	complete bool
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// WaitUntil waits on timer, which it resets and which may be reused from
// one arrival to the next, until at or until ctx ends. It reports whether
// ctx is still live: false means stop sending.
func WaitUntil(ctx context.Context, timer *time.Timer, at time.Time) bool {
	if d := time.Until(at); d > 0 {
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err() == nil
}

// Label names the load in reports: "200/s" or "16 clients".
func (l Load) Label() string {
	if l.Clients > 0 {
		return fmt.Sprintf("%d clients", l.Clients)
	}
	return fmt.Sprintf("%g/s", l.Rate)
}

// Run sends t's request on the schedule l and waits for every response.
// It stops starting requests when ctx ends.
func Run(ctx context.Context, t Target, l Load) *Result {
	if l.Clients > 0 {
		return runClosed(ctx, t, l)
	}
	n, iv := l.Count(), l.Interval()
	recs := make([]record, n)
	res := &Result{Target: t.Name}
	var wg sync.WaitGroup
	start := time.Now().Add(time.Millisecond)
	timer := time.NewTimer(0)
	<-timer.C
	for i := range n {
		at := start.Add(time.Duration(i) * iv)
		if !WaitUntil(ctx, timer, at) {
			break
		}
		res.MaxLag = max(res.MaxLag, time.Since(at))
		res.Sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i] = t.do()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.add(t, recs[:res.Sent])
	return res
}

// runClosed runs l's clients, each sending t's request again as soon as
// its last one ended, until l.Duration has passed since the start or
// l.MaxRequests have started.
func runClosed(ctx context.Context, t Target, l Load) *Result {
	res := &Result{Target: t.Name}
	var (
		mu   sync.Mutex
		recs []record
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(l.Duration)
	for range l.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				mu.Lock()
				if l.MaxRequests > 0 && res.Sent >= l.MaxRequests {
					mu.Unlock()
					return
				}
				res.Sent++
				mu.Unlock()
				r := t.do()
				mu.Lock()
				recs = append(recs, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.add(t, recs)
	return res
}

// add tallies the records of a run.
func (res *Result) add(t Target, recs []record) {
	for _, r := range recs {
		if r.streamed {
			res.Streams++
			res.Events += r.events
			res.EventCounts = append(res.EventCounts, r.events)
			if !r.complete {
				res.Incomplete++
			}
		}
		if r.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = r.err.Error()
			}
			continue
		}
		res.OK++
		res.Latency = append(res.Latency, r.latency)
		if t.Kind != Unary {
			res.TTFT = append(res.TTFT, r.ttft)
		}
	}
}

// do sends one request and reads its whole response.
func (t *Target) do() (rec record) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if t.Token != "" {
		req.Header.Set("Authorization", "Bearer "+t.Token)
	}
	req.SetBodyRaw(t.Body)
	sent := time.Now()
	if err := t.Client.Do(req, resp); err != nil {
		rec.err = err
		return rec
	}
	if sc := resp.StatusCode(); sc != fasthttp.StatusOK {
		rec.err = fmt.Errorf("status %d: %s", sc, truncate(resp.Body()))
		resp.SetConnectionClose()
		return rec
	}
	if t.Kind == Unary {
		body := resp.Body()
		rec.latency = time.Since(sent)
		if t.Expect != nil && !bytes.Contains(body, t.Expect) {
			rec.err = fmt.Errorf("response lacks %q: %s", t.Expect, truncate(body))
		}
		return rec
	}
	var c EventCounter = &NDJSONCounter{}
	if t.Kind == SSE {
		c = &SSECounter{}
	}
	rec.streamed = true
	body := resp.BodyStream()
	if body == nil {
		body = bytes.NewReader(resp.Body())
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(body)
	err := ReadLines(br, c, func() { rec.ttft = time.Since(sent) })
	br.Reset(nil)
	readerPool.Put(br)
	rec.latency = time.Since(sent)
	rec.events, rec.complete = c.Events(), c.Complete()
	switch {
	case err != nil:
		rec.err = err
	case !rec.complete:
		rec.err = fmt.Errorf("stream ended without its end marker after %d events", rec.events)
	case rec.ttft == 0:
		rec.err = fmt.Errorf("stream of %d events carried no text", rec.events)
	}
	if rec.err != nil {
		resp.SetConnectionClose() // do not reuse a connection left mid-stream
	}
	return rec
}
