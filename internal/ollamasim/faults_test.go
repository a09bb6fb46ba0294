package ollamasim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

func TestFailFault(t *testing.T) {
	tests := []struct {
		name     string
		faults   ollamasim.Faults
		wantCode int
		wantMsg  string
	}{
		{"default 500", ollamasim.Faults{Fail: true}, 500, ollamasim.DefaultFailMessage},
		{"custom status", ollamasim.Faults{Fail: true, FailStatus: 502, FailMessage: "bad gateway"}, 502, "bad gateway"},
		{"scoped to another model", ollamasim.Faults{Fail: true, Model: thinkModel}, 0, ""},
		{"scoped to this model", ollamasim.Faults{Fail: true, Model: "llama3.2"}, 0, ""},
		{"scoped to this model with tag", ollamasim.Faults{Fail: true, Model: chatModel}, 500, ollamasim.DefaultFailMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ollamasim.StartTest(t, ollamasim.Config{Faults: tc.faults})
			c := s.Client()
			ctx := testCtx(t)
			calls := map[string]func() error{
				"chat": func() error {
					_, err := chat(ctx, c, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
					return err
				},
				"generate": func() error {
					_, err := generate(ctx, c, &api.GenerateRequest{Model: chatModel, Prompt: "hi"})
					return err
				},
				"embed": func() error {
					_, err := c.Embed(ctx, &api.EmbedRequest{Model: chatModel, Input: "hi"})
					return err
				},
			}
			for name, call := range calls {
				err := call()
				if statusOf(err) != tc.wantCode || (tc.wantCode != 0 && errorText(err) != tc.wantMsg) {
					t.Errorf("%s: %v, want %d %q", name, err, tc.wantCode, tc.wantMsg)
				}
			}
			if _, err := c.List(ctx); err != nil {
				t.Errorf("list failed under the fail fault: %v", err)
			}
		})
	}
}

func TestDropFault(t *testing.T) {
	tests := []struct {
		name       string
		after      int
		stream     bool
		wantChunks int
		wantDrop   bool
	}{
		{name: "before the first chunk", after: 0, stream: true, wantChunks: 0, wantDrop: true},
		{name: "after three chunks", after: 3, stream: true, wantChunks: 3, wantDrop: true},
		{name: "instead of the done message", after: 20, stream: true, wantChunks: 20, wantDrop: true},
		{name: "beyond the answer", after: 100, stream: true, wantChunks: 21},
		{name: "not streamed", after: 3, stream: false, wantChunks: 0, wantDrop: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ollamasim.StartTest(t, ollamasim.Config{ResponseTokens: 20})
			s.SetDropAfter(tc.after)
			resps, err := chat(testCtx(t), s.Client(), &api.ChatRequest{Model: chatModel, Messages: userMsg("hi"), Stream: &tc.stream})
			if len(resps) != tc.wantChunks {
				t.Errorf("%d messages (err %v), want %d", len(resps), err, tc.wantChunks)
			}
			gotDone := len(resps) > 0 && resps[len(resps)-1].Done
			if gotDone == tc.wantDrop {
				t.Errorf("final message received: %v, want %v", gotDone, !tc.wantDrop)
			}
			if !tc.stream && err == nil {
				t.Error("dropped single answer gave no error")
			}
			rec := lastRecord(t, s, "/api/chat")
			if (rec.Outcome == ollamasim.OutcomeDropped) != tc.wantDrop || (s.Stats().Dropped == 1) != tc.wantDrop {
				t.Errorf("record %+v, want dropped=%v", rec, tc.wantDrop)
			}
		})
	}
}

func TestStallFault(t *testing.T) {
	for _, after := range []int{0, 2} {
		t.Run(fmt.Sprintf("after %d", after), func(t *testing.T) {
			s := ollamasim.StartTest(t, ollamasim.Config{Faults: ollamasim.Faults{Stall: true, StallAfter: after}})
			ctx, cancel := context.WithCancel(testCtx(t))
			chunks := make(chan api.ChatResponse, 100)
			got := make(chan int, 1)
			go func() {
				n := 0
				_ = s.Client().Chat(ctx, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")}, func(r api.ChatResponse) error {
					n++
					chunks <- r
					return nil
				})
				got <- n
			}()
			waitFor(t, s, "stall", func(st ollamasim.Stats) bool { return st.Stalled == 1 })
			for range after {
				select {
				case <-chunks:
				case <-ctx.Done():
					t.Fatal("chunks sent before the stall never arrived")
				}
			}
			if st := s.Stats(); st.InFlight != 1 || st.Cancelled != 0 {
				t.Fatalf("stalled request not held: %+v", st)
			}
			cancel()
			if n := <-got; n != after {
				t.Errorf("%d messages before the stall, want %d", n, after)
			}
			waitFor(t, s, "cancellation", func(st ollamasim.Stats) bool { return st.Cancelled == 1 })
			rec := lastRecord(t, s, "/api/chat")
			if rec.Outcome != ollamasim.OutcomeCancelled || rec.Fault != ollamasim.FaultStall || rec.Chunks != after {
				t.Errorf("record %+v, want a cancelled stall after %d chunks", rec, after)
			}
		})
	}
}

// freshClient opens a new connection for every request, so that a refused
// connection shows as such rather than as a reset pooled one.
func freshClient(base string) *api.Client {
	u, _ := url.Parse(base)
	return api.NewClient(u, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}})
}

func TestRefuseFault(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{slowModel("slow:1b", 1, 1)}})
	c := freshClient(s.URL())
	ctx := testCtx(t)
	streamDone := make(chan error, 1)
	go func() {
		_, err := chat(ctx, s.Client(), &api.ChatRequest{Model: "slow:1b", Messages: userMsg("hi")})
		streamDone <- err
	}()
	waitFor(t, s, "stream running", func(st ollamasim.Stats) bool { return st.Model("slow:1b").Running == 1 })

	if err := s.SetRefuse(true); err != nil {
		t.Fatal(err)
	}
	<-streamDone
	waitFor(t, s, "reset stream cancelled", func(st ollamasim.Stats) bool { return st.Cancelled == 1 && st.Refused >= 1 })
	if err := c.Heartbeat(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("heartbeat while refusing: %v, want connection refused", err)
	}

	if err := s.SetRefuse(false); err != nil {
		t.Fatal(err)
	}
	if err := c.Heartbeat(ctx); err != nil {
		t.Fatalf("heartbeat after refusing: %v", err)
	}
	if _, err := c.List(ctx); err != nil {
		t.Fatalf("list after refusing: %v", err)
	}
}

func TestRefuseWithoutListener(t *testing.T) {
	s := ollamasim.New(ollamasim.Config{Faults: ollamasim.Faults{Refuse: true}})
	hs := httptest.NewServer(s)
	defer hs.Close()
	c := freshClient(hs.URL)
	if err := c.Heartbeat(testCtx(t)); err == nil {
		t.Fatal("request answered while refusing")
	}
	if s.Stats().Refused != 1 {
		t.Errorf("refused %d, want 1", s.Stats().Refused)
	}
	_ = s.ClearFaults()
	if err := c.Heartbeat(testCtx(t)); err != nil {
		t.Fatalf("after clearing: %v", err)
	}
}

func TestControlEndpoints(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{Name: "sim-1"})
	c := s.Client()
	steps := []struct {
		name, method, path, body string
		wantCode                 int
		check                    func(t *testing.T, body string)
	}{
		{"set fail", "POST", "/_sim/faults", `{"fail":true,"fail_message":"boom"}`, 200, func(t *testing.T, _ string) {
			_, err := chat(testCtx(t), c, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
			if statusOf(err) != 500 || errorText(err) != "boom" {
				t.Errorf("chat: %v, want 500 boom", err)
			}
		}},
		{"read faults", "GET", "/_sim/faults", ``, 200, func(t *testing.T, body string) {
			var f ollamasim.Faults
			if err := json.Unmarshal([]byte(body), &f); err != nil || !f.Fail || f.FailMessage != "boom" {
				t.Errorf("faults %s, want fail boom", body)
			}
		}},
		{"clear faults", "DELETE", "/_sim/faults", ``, 200, func(t *testing.T, _ string) {
			mustChat(t, c, &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
			if rec := lastRecord(t, s, "/api/chat"); rec.Outcome != ollamasim.OutcomeOK {
				t.Errorf("record %+v, want ok after clearing", rec)
			}
		}},
		{"stats", "GET", "/_sim/stats", ``, 200, func(t *testing.T, body string) {
			var st ollamasim.Stats
			if err := json.Unmarshal([]byte(body), &st); err != nil || st.Name != "sim-1" || st.Errors != 1 || st.Completed != 1 {
				t.Errorf("stats %s, want sim-1 with one error and one success", body)
			}
			if !st.Model(chatModel).Loaded {
				t.Errorf("stats %s, want %s loaded", body, chatModel)
			}
		}},
		{"add model", "POST", "/_sim/models", `{"name":"custom:3b","size":3000000000}`, 204, func(t *testing.T, _ string) {
			if !listed(t, c, "custom:3b") {
				t.Error("added model not listed")
			}
		}},
		{"bad faults", "POST", "/_sim/faults", `{"fail":`, 400, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, _, body := rawDo(t, s, st.method, st.path, st.body)
			if code != st.wantCode {
				t.Fatalf("%s %s = %d %s, want %d", st.method, st.path, code, strings.TrimSpace(body), st.wantCode)
			}
			if st.check != nil {
				st.check(t, body)
			}
		})
	}
}

func TestShutdownReleasesStall(t *testing.T) {
	s := ollamasim.New(ollamasim.Config{Faults: ollamasim.Faults{Stall: true}})
	if _, err := s.StartLocal(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := chat(testCtx(t), s.Client(), &api.ChatRequest{Model: chatModel, Messages: userMsg("hi")})
		done <- err
	}()
	waitFor(t, s, "stall", func(st ollamasim.Stats) bool { return st.Stalled == 1 })
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	<-done
	if st := s.Stats(); st.InFlight != 0 {
		t.Errorf("%d requests still in flight after shutdown", st.InFlight)
	}
}

func TestFaultSwitchedMidStream(t *testing.T) {
	steady := ollamasim.ModelConfig{Name: "steady:1b", TokensPerSecond: 100, ResponseTokens: 100000}
	s := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{steady}})
	chunks := make(chan api.ChatResponse, 1000)
	done := make(chan error, 1)
	go func() {
		done <- s.Client().Chat(testCtx(t), &api.ChatRequest{Model: "steady:1b", Messages: userMsg("hi")}, func(r api.ChatResponse) error {
			chunks <- r
			return nil
		})
	}()
	for range 3 {
		<-chunks
	}
	s.SetDropAfter(0)
	<-done
	close(chunks)
	for r := range chunks {
		if r.Done {
			t.Fatal("final message received from a dropped stream")
		}
	}
	if rec := lastRecord(t, s, "/api/chat"); rec.Outcome != ollamasim.OutcomeDropped || rec.Chunks < 3 {
		t.Errorf("record %+v, want dropped after at least 3 chunks", rec)
	}
	s.SetDropAfter(-1)
	if f := s.Faults(); f.Drop {
		t.Fatalf("faults %+v after disabling drop", f)
	}
	resps, err := chat(testCtx(t), s.Client(), &api.ChatRequest{Model: "steady:1b", Messages: userMsg("hi"), Options: map[string]any{"num_predict": 3}})
	if err != nil || len(resps) != 4 || !resps[3].Done {
		t.Errorf("after disabling: %d messages, %v; want a complete answer", len(resps), err)
	}
}
