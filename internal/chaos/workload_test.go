package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/linreg"
)

// Outcomes of an inference request.
const (
	outOK       = "ok"            // a whole answer ([DONE] or done:true)
	outError    = "clear error"   // an error status or an error event
	outRefused  = "not connected" // the entry node could not be reached
	outCut      = "cut"           // the connection broke mid-answer
	outLost     = "lost"          // a stream ended with neither its end nor an error
	outHungUp   = "hung up"       // the client left on purpose
	outTimedOut = "timed out"     // no answer within the client's deadline
)

// clientTimeout is how long a client waits for a whole answer (answers
// take well under a second here): no answer by then is no clear error.
const clientTimeout = 15 * time.Second

// request is one inference request and how it ended.
type request struct {
	entry      string
	stream     bool
	native     bool
	start, end time.Time
	outcome    string
	status     int
	detail     string
}

// inference sends requests to the running nodes until ctx ends.
type inference struct {
	f       *fleet
	model   string
	mu      sync.Mutex
	done    []request
	hc      *http.Client
	hangups int
}

func newInference(f *fleet, model string) *inference {
	return &inference{f: f, model: model, hc: &http.Client{Timeout: clientTimeout}}
}

// run is one client's loop: a request at a time, to a running node chosen
// at random, streamed or not, OpenAI or Ollama-native; every tenth
// streamed request hangs up after the first chunk.
func (in *inference) run(ctx context.Context, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 7))
	for n := 0; ctx.Err() == nil; n++ {
		alive := in.f.inService()
		if len(alive) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		r := request{entry: alive[rnd.IntN(len(alive))], stream: rnd.IntN(2) == 0, native: rnd.IntN(4) == 0}
		hangUp := r.stream && n%10 == 9
		in.one(ctx, &r, hangUp)
		in.mu.Lock()
		in.done = append(in.done, r)
		in.mu.Unlock()
	}
}

func (in *inference) one(ctx context.Context, r *request, hangUp bool) {
	path, body := "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"tell me something %d"}]}`, in.model, r.stream, time.Now().UnixNano())
	if r.native {
		path = "/api/chat"
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, in.f.url(r.entry)+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	r.start = time.Now()
	defer func() { r.end = time.Now() }()
	resp, err := in.hc.Do(req)
	if err != nil {
		r.outcome, r.detail = transportOutcome(ctx, err, outRefused), err.Error()
		return
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		r.outcome, r.detail = outError, routeHeaders(resp)+string(b)
		if !strings.Contains(string(b), "error") {
			r.outcome = outLost // an error status without an error body is not clear
		}
		return
	}
	if !r.stream {
		b, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			r.outcome, r.detail = transportOutcome(ctx, err, outCut), err.Error()
		case strings.Contains(string(b), `"content"`):
			r.outcome = outOK
		default:
			r.outcome, r.detail = outLost, string(b)
		}
		return
	}
	in.readStream(ctx, r, resp.Body, hangUp, cancel)
}

// readStream reads an SSE or NDJSON stream to its end.
func (in *inference) readStream(ctx context.Context, r *request, body io.Reader, hangUp bool, cancel func()) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	chunks := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "data: [DONE]", r.native && strings.Contains(line, `"done":true`) && !strings.Contains(line, `"error"`):
			r.outcome = outOK
			return
		case strings.Contains(line, `"error"`):
			r.outcome, r.detail = outError, line
			return
		case strings.TrimSpace(line) != "":
			chunks++
		}
		if hangUp && chunks == 1 {
			cancel()
			r.outcome = outHungUp
			in.mu.Lock()
			in.hangups++
			in.mu.Unlock()
			return
		}
	}
	if err := sc.Err(); err != nil {
		r.outcome, r.detail = transportOutcome(ctx, err, outCut), err.Error()
		return
	}
	r.outcome = outLost
}

// routeHeaders are the routing decision's headers of an answer, for
// telling where a failed request went.
func routeHeaders(resp *http.Response) string {
	var b strings.Builder
	for _, h := range []string{"Sovra-Node", "Sovra-Replica", "Sovra-Route", "Sovra-Attempts"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Fprintf(&b, "%s=%s ", h, v)
		}
	}
	return b.String()
}

func transportOutcome(ctx context.Context, err error, otherwise string) string {
	switch {
	case ctx.Err() != nil:
		return outHungUp // the suite stopped the client
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "Client.Timeout"):
		return outTimedOut
	}
	return otherwise
}

// admin writes and reads the names of API keys through running nodes,
// and keeps the history.
type admin struct {
	f     *fleet
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// acked maps each key to the last value a write of it was
	// acknowledged for; unknown counts writes whose outcome stayed unknown.
	acked            map[string]int
	writes, unknown  int
	reads, readFails int
}

func newAdmin(f *fleet) *admin { return &admin{f: f, start: time.Now(), acked: map[string]int{}} }

func (a *admin) now() int64 { return int64(time.Since(a.start)) }

func (a *admin) pick(rnd *rand.Rand) *client.Client {
	alive := a.f.alive()
	if len(alive) == 0 {
		return nil
	}
	return a.f.client(alive[rnd.IntN(len(alive))])
}

// writer owns one key: it sets the key's name to 1, 2, 3, ... and reads
// it back, through random running nodes, until ctx ends.
func (a *admin) writer(ctx context.Context, id int, key string) {
	rnd := rand.New(rand.NewPCG(uint64(id), 11))
	for v := 1; ctx.Err() == nil; v++ {
		a.write(rnd, id, key, v)
		a.read(rnd, id, key)
	}
}

// write sets the key's name to v with one idempotency key, asking again
// with it (for up to writeResolve, as a client with a deadline would)
// while the outcome is unknown, so that an acknowledged write is known as
// such and few stay unknown: each unknown one is pending forever to the
// linearizability checker, whose search grows with them.
func (a *admin) write(rnd *rand.Rand, client_ int, key string, v int) {
	idem := fmt.Sprintf("chaos-%s-%d", key, v)
	name := strconv.Itoa(v)
	call := a.now()
	op := porcupine.Operation{ClientId: client_, Input: linreg.Input{Key: key, Write: true, Value: v}, Call: call}
	give := time.Now().Add(writeResolve)
	for attempt := 0; attempt == 0 || time.Now().Before(give); attempt++ {
		if attempt > 0 {
			time.Sleep(retryPause) // a client's back-off between retries
		}
		cl := a.pick(rnd)
		if cl == nil {
			break
		}
		ctx, cancel := context.WithTimeout(client.WithIdempotencyKey(context.Background(), idem), 6*time.Second)
		_, err := cl.UpdateKey(ctx, key, client.KeyRequest{Name: &name})
		cancel()
		switch {
		case err == nil:
			op.Return, op.Output = a.now(), linreg.Output{}
			a.record(op, func() { a.acked[key], a.writes = v, a.writes+1 })
			return
		case definiteFailure(err) && attempt == 0:
			return // refused before it reached raft: no effect, nothing to record
		}
	}
	op.Return, op.Output = math.MaxInt64, linreg.Output{Unknown: true}
	a.record(op, func() { a.writes, a.unknown = a.writes+1, a.unknown+1 })
}

// A write's retries: for how long, and the pause between two.
const (
	writeResolve = 20 * time.Second
	retryPause   = 100 * time.Millisecond
)

// definiteFailure is an error after which the write cannot have applied.
func definiteFailure(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && (errors.Is(err, client.ErrNoLeader) || ce.Status == http.StatusBadRequest)
}

func (a *admin) read(rnd *rand.Rand, client_ int, key string) {
	cl := a.pick(rnd)
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	call := a.now()
	k, err := cl.Key(ctx, key)
	if err != nil {
		a.record(porcupine.Operation{}, func() { a.readFails++ })
		return
	}
	v, _ := strconv.Atoi(k.Name)
	op := porcupine.Operation{ClientId: client_, Input: linreg.Input{Key: key}, Call: call, Output: linreg.Output{Value: v}, Return: a.now()}
	a.record(op, func() { a.reads++ })
}

func (a *admin) record(op porcupine.Operation, count func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if op.Input != nil {
		a.ops = append(a.ops, op)
	}
	count()
}
