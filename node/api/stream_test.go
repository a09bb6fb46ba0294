package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node/backend"
)

const streamBody = `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// sseEvents reads a whole SSE body into its data payloads.
func sseEvents(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return out
}

func TestStreamFailureAfterFirstByteIsInBand(t *testing.T) {
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "Hel"}}); err != nil {
			return err
		}
		return fmt.Errorf("%w: connection reset", backend.ErrTruncated)
	}}
	url, _ := startServer(t, be)
	resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events := sseEvents(t, resp.Body)
	if len(events) != 2 {
		t.Fatalf("want one chunk and one error event, got %q", events)
	}
	if strings.Contains(strings.Join(events, "\n"), "[DONE]") {
		t.Fatalf("a failed stream must not end with [DONE]: %q", events)
	}
	var last struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(events[1]), &last); err != nil || last.Error == nil || last.Error.Message == "" {
		t.Fatalf("last event is not an error: %q", events[1])
	}
}

func TestStreamFailureBeforeFirstByteKeepsStatus(t *testing.T) {
	be := &fakeBackend{chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
		return fmt.Errorf("%w: busy", backend.ErrOverloaded)
	}}
	url, _ := startServer(t, be)
	checkOpenAIError(t, url, errorCase{path: "/v1/chat/completions", body: streamBody, status: 503, code: "backend_overloaded", retryAfter: "1"})
}

func TestStreamIsNotBuffered(t *testing.T) {
	release := make(chan struct{})
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "first"}}); err != nil {
			return err
		}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return words()(ctx, req, fn)
	}}
	url, _ := startServer(t, be)
	resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	// The first chunk must arrive while the backend is still holding the rest.
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"first"`) {
			break
		}
	}
	close(release)
	rest := sseEvents(t, resp.Body)
	if len(rest) == 0 || rest[len(rest)-1] != "[DONE]" {
		t.Fatalf("stream did not finish with [DONE]: %q", rest)
	}
}

func TestStreamIncludeUsageAndReasoning(t *testing.T) {
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		_ = fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Thinking: "let me think"}})
		return words("Answer")(ctx, req, fn)
	}}
	url, _ := startServer(t, be)
	body := `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
	resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := sseEvents(t, resp.Body)
	if len(events) < 3 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var first, usage chatChunk
	_ = json.Unmarshal([]byte(events[0]), &first)
	if first.Choices[0].Delta.ReasoningContent != "let me think" || first.Choices[0].Delta.Reasoning != "let me think" {
		t.Errorf("thinking not in reasoning_content and reasoning: %s", events[0])
	}
	if err := json.Unmarshal([]byte(events[len(events)-2]), &usage); err != nil || usage.Usage == nil {
		t.Fatalf("no usage chunk before [DONE]: %s", events[len(events)-2])
	}
	if usage.Usage.PromptTokens != 3 || usage.Usage.CompletionTokens != 1 || len(usage.Choices) != 0 {
		t.Errorf("usage chunk %s", events[len(events)-2])
	}
}

func TestToolCallsGetIDsAndIndexes(t *testing.T) {
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		calls := []api.ToolCall{{Function: api.ToolCallFunction{Name: "a"}}, {Function: api.ToolCallFunction{Name: "b"}}}
		return fn(api.ChatResponse{Model: req.Model, Done: true, DoneReason: "stop", Message: api.Message{Role: "assistant", ToolCalls: calls}})
	}}
	url, _ := startServer(t, be)
	resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cc chatCompletion
	if err := json.NewDecoder(resp.Body).Decode(&cc); err != nil {
		t.Fatal(err)
	}
	calls := cc.Choices[0].Message.ToolCalls
	if len(calls) != 2 || calls[0].ID == "" || calls[0].ID == calls[1].ID || calls[0].Index != 0 || calls[1].Index != 1 {
		t.Fatalf("tool calls %+v", calls)
	}
	if *cc.Choices[0].FinishReason != "tool_calls" || cc.Choices[0].Message.Content != nil {
		t.Errorf("finish %q content %v", *cc.Choices[0].FinishReason, cc.Choices[0].Message.Content)
	}
}

// blockingBackend blocks every chat until its context ends and reports when.
// A non-nil started is told once the chat is underway.
func blockingBackend(streamFirst bool, started chan<- struct{}, cancelled chan<- time.Time) *fakeBackend {
	return &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if streamFirst {
			if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "x"}}); err != nil {
				return err
			}
		}
		if started != nil {
			started <- struct{}{}
		}
		<-ctx.Done()
		cancelled <- time.Now()
		return ctx.Err()
	}}
}

func TestClientHangupCancelsBackend(t *testing.T) {
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", streamed), func(t *testing.T) {
			cancelled := make(chan time.Time, 1)
			url, _ := startServer(t, blockingBackend(streamed, nil, cancelled))
			conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			hangUpCancels(t, conn, streamed, nil, cancelled, "the client hung up")
		})
	}
}

// hangupBound bounds the time from a client's hang-up to the cancellation
// of its backend call. The backends of these tests block until cancelled,
// so nothing but the hang-up watch (a failed write, or the socket looked
// at every hangupPoll) can end them: a bound of many polls still proves
// the watch did it, without failing when a loaded machine delays the
// poll's goroutine.
const hangupBound = 30 * hangupPoll

// hangUpCancels posts a chat on conn as raw HTTP/1.1, waits for started
// when it is not nil, and when streamed for the stream's first byte, then
// closes conn and checks that the backend call was cancelled within
// hangupBound; how says what the client did, for the failure message.
func hangUpCancels(t *testing.T, conn net.Conn, streamed bool, started <-chan struct{}, cancelled <-chan time.Time, how string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"m","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, streamed)
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		testauth.Token, len(body), body)
	if started != nil {
		<-started
	}
	if streamed { // wait until the stream has started
		buf := make([]byte, 1)
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	hungUp := time.Now()
	conn.Close()
	select {
	case at := <-cancelled:
		if d := at.Sub(hungUp); d > hangupBound {
			t.Fatalf("backend cancelled %v after the hang-up, want within %v", d, hangupBound)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the backend call was not cancelled after %s", how)
	}
}

func TestShutdownLetsStreamsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "a"}}); err != nil {
			return err
		}
		close(started)
		<-release
		return words("b")(ctx, req, fn)
	}}
	url, s := startServer(t, be)
	type result struct {
		events []string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(streamBody))
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		got <- result{events: sseEvents(t, resp.Body)}
	}()
	<-started
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- s.Shutdown(ctx)
	}()
	// New connections are refused once shutdown has begun.
	testwait.For(t, 5*time.Second, "new connections refused", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(release)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := len(r.events); n == 0 || r.events[n-1] != "[DONE]" {
		t.Fatalf("in-flight stream cut by shutdown: %q", r.events)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestLongGenerationOutlivesWriteTimeout checks that the write timeout
// bounds each write, not the whole response: streams and non-streamed
// answers that take several times the timeout complete.
func TestLongGenerationOutlivesWriteTimeout(t *testing.T) {
	slow := func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		for range 6 {
			select {
			case <-time.After(100 * time.Millisecond): // generation time
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "x"}}); err != nil {
				return err
			}
		}
		return words()(ctx, req, fn)
	}
	url, _ := startServer(t, &fakeBackend{chat: slow}, func(c *Config) { c.WriteTimeout = 150 * time.Millisecond })
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			body := fmt.Sprintf(`{"model":"m","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
			resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, err %v", resp.StatusCode, err)
			}
			if stream && !strings.HasSuffix(string(raw), "data: [DONE]\n\n") {
				t.Fatalf("stream cut: %q", raw)
			}
			if !stream && !strings.Contains(string(raw), `"finish_reason":"stop"`) {
				t.Fatalf("answer cut: %q", raw)
			}
		})
	}
}

// TestHangupsMidStreamDoNotCrash: fasthttp writes a stream from a
// goroutine of its own, which keeps flushing after the client is gone and
// the request context is recycled for the next request. Many hang-ups
// while other requests reuse contexts must not crash the server.
func TestHangupsMidStreamDoNotCrash(t *testing.T) {
	be := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		for i := 0; ; i++ {
			// Keep producing for a while after a cancellation, as a
			// backend between two reads does.
			if err := fn(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "x"}}); err != nil && i > 200 {
				return err
			}
			if i > 2000 {
				return fn(api.ChatResponse{Model: req.Model, Done: true})
			}
		}
	}}
	url, _ := startServer(t, be, func(c *Config) { c.WriteTimeout = time.Second })
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for range 40 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			testauth.Token, len(body), body)
		buf := make([]byte, 512)
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		// Other requests reuse the recycled contexts meanwhile.
		if st, b := post(t, url, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`); st != 200 {
			t.Fatalf("a request after a hang-up: %d %s", st, b)
		}
	}
}
