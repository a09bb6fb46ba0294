package ollamasim_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

const busyError = "server busy, please try again.  maximum pending requests exceeded"

func TestQueueLimit(t *testing.T) {
	tests := []struct {
		name         string
		parallel     int
		maxQueue     int
		requests     int
		wantRejected int
	}{
		{name: "two slots, queue of three", parallel: 2, maxQueue: 3, requests: 10, wantRejected: 5},
		{name: "one slot, no queue", parallel: 1, maxQueue: ollamasim.NoQueue, requests: 4, wantRejected: 3},
		{name: "room for everyone", parallel: 2, maxQueue: 10, requests: 6, wantRejected: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{slowModel("slow:1b", tc.parallel, tc.maxQueue)}})
			c := s.Client()
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			results := make(chan error, tc.requests)
			for range tc.requests {
				go func() {
					_, err := chat(ctx, c, &api.ChatRequest{Model: "slow:1b", Messages: userMsg("hi")})
					results <- err
				}()
			}
			waitFor(t, s, "every request running, queued or rejected", func(st ollamasim.Stats) bool {
				ms := st.Model("slow:1b")
				return ms.Running+ms.Queued+int(st.Rejected) == tc.requests
			})
			st := s.Stats()
			ms := st.Model("slow:1b")
			if int(st.Rejected) != tc.wantRejected || ms.Running != tc.parallel || ms.Queued != tc.requests-tc.parallel-tc.wantRejected {
				t.Fatalf("rejected %d running %d queued %d; want %d rejected, %d running", st.Rejected, ms.Running, ms.Queued, tc.wantRejected, tc.parallel)
			}
			for range tc.wantRejected {
				if err := <-results; statusOf(err) != 503 || errorText(err) != busyError {
					t.Errorf("rejected request: %v, want 503 %q", err, busyError)
				}
			}
			cancel()
			for range tc.requests - tc.wantRejected {
				if err := <-results; statusOf(err) == 503 {
					t.Errorf("admitted request got 503")
				}
			}
			waitFor(t, s, "admitted requests cancelled", func(st ollamasim.Stats) bool {
				return st.Cancelled == int64(tc.requests-tc.wantRejected) && st.InFlight == 0
			})
		})
	}
}

func TestParallelSlots(t *testing.T) {
	tests := []struct {
		name     string
		parallel int
		requests int
	}{
		{"one at a time", 1, 5},
		{"three at a time", 3, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ollamasim.ModelConfig{Name: "m:1b", Parallel: tc.parallel, TokensPerSecond: 2000, ResponseTokens: 20}
			s := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{m}})
			c := s.Client()
			var wg sync.WaitGroup
			errs := make(chan error, tc.requests)
			for range tc.requests {
				wg.Go(func() {
					_, err := chat(testCtx(t), c, &api.ChatRequest{Model: "m:1b", Messages: userMsg("hi")})
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			ms := s.Stats().Model("m:1b")
			if ms.PeakRunning < 1 || ms.PeakRunning > tc.parallel || ms.Requests != int64(tc.requests) {
				t.Errorf("peak %d over %d requests, want at most %d at once", ms.PeakRunning, ms.Requests, tc.parallel)
			}
		})
	}
}

func TestTiming(t *testing.T) {
	const (
		ttft     = 30 * time.Millisecond
		perToken = time.Millisecond
		load     = 10 * time.Millisecond
		tokens   = 10
	)
	s := ollamasim.StartTest(t, ollamasim.Config{
		TTFT: ttft, PromptTokenCost: perToken, LoadDuration: load, TokensPerSecond: 200, ResponseTokens: tokens,
	})
	c := s.Client()
	for i, name := range []string{"cold", "warm"} {
		t.Run(name, func(t *testing.T) {
			_, _, final := mustChat(t, c, &api.ChatRequest{Model: chatModel, Messages: userMsg("a fairly long prompt with several words")})
			rec := lastRecord(t, s, "/api/chat")
			prompt := ttft + time.Duration(final.PromptEvalCount)*perToken
			if final.PromptEvalDuration < prompt || rec.FirstChunk < prompt {
				t.Errorf("prompt eval %v, first chunk %v; want at least %v", final.PromptEvalDuration, rec.FirstChunk, prompt)
			}
			if final.EvalDuration < (tokens-1)*5*time.Millisecond || final.EvalCount != tokens {
				t.Errorf("%d tokens in %v, want %d at 200/s", final.EvalCount, final.EvalDuration, tokens)
			}
			if cold := i == 0; (final.LoadDuration >= load) != cold {
				t.Errorf("load_duration %v, want a load only when cold", final.LoadDuration)
			}
			if final.TotalDuration < final.PromptEvalDuration+final.EvalDuration {
				t.Errorf("total %v below its parts", final.TotalDuration)
			}
		})
	}
}

func TestPrefixCache(t *testing.T) {
	cached := ollamasim.ModelConfig{Name: "cached:1b", PrefixCache: 2}
	plain := ollamasim.ModelConfig{Name: "plain:1b"}
	s := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{cached, plain}, PromptTokenCost: time.Millisecond})
	c := s.Client()
	system := api.Message{Role: "system", Content: "You answer in one short paragraph."}
	first := []api.Message{system, {Role: "user", Content: "Tell me about queues."}}
	ask := func(model string, msgs []api.Message) (string, ollamasim.RequestRecord) {
		content, _, _ := mustChat(t, c, &api.ChatRequest{Model: model, Messages: msgs})
		return content, lastRecord(t, s, "/api/chat")
	}
	reply, rec1 := ask("cached:1b", first)
	follow := append(append([]api.Message{}, first...),
		api.Message{Role: "assistant", Content: reply}, api.Message{Role: "user", Content: "And stacks?"})
	systemTokens := 4 + ollamasim.CountTokens(system.Content)
	tests := []struct {
		name       string
		model      string
		msgs       []api.Message
		wantCached int
	}{
		{"no cache on first use", "plain:1b", first, 0},
		{"follow-up reuses prompt and reply", "cached:1b", follow, rec1.PromptTokens + 4 + ollamasim.CountTokens(reply)},
		{"other question shares the system prompt", "cached:1b", []api.Message{system, {Role: "user", Content: "Why?"}}, systemTokens},
		{"repeated prompt evaluates one token", "cached:1b", first, rec1.PromptTokens - 1},
		{"unrelated prompt", "cached:1b", userMsg("Unrelated one"), 0},
		{"another unrelated prompt", "cached:1b", userMsg("Unrelated two"), 0},
		{"conversation evicted from a cache of two", "cached:1b", follow, 0},
		{"model without cache", "plain:1b", follow, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rec := ask(tc.model, tc.msgs)
			if rec.CachedTokens != tc.wantCached {
				t.Errorf("cached %d of %d prompt tokens, want %d", rec.CachedTokens, rec.PromptTokens, tc.wantCached)
			}
			if min := time.Duration(rec.PromptTokens-rec.CachedTokens) * time.Millisecond; rec.FirstChunk < min {
				t.Errorf("first chunk after %v, want at least %v for the uncached tokens", rec.FirstChunk, min)
			}
		})
	}
}

func TestCancellation(t *testing.T) {
	glacial := ollamasim.ModelConfig{Name: "glacial:1b", TokensPerSecond: 0.001, ResponseTokens: 100}
	loading := ollamasim.ModelConfig{Name: "loading:1b", LoadDuration: time.Hour}
	thinking := ollamasim.ModelConfig{Name: "pondering:1b", TTFT: time.Hour}
	tests := []struct {
		name    string
		model   string
		stream  *bool
		blocker bool // a first request holds the only slot, so ours queues
		ready   func(ollamasim.ModelStats) bool
	}{
		{"mid-stream", "glacial:1b", nil, false, func(ms ollamasim.ModelStats) bool { return ms.Running == 1 }},
		{"not streamed", "glacial:1b", boolPtr(false), false, func(ms ollamasim.ModelStats) bool { return ms.Running == 1 }},
		{"while queued", "glacial:1b", nil, true, func(ms ollamasim.ModelStats) bool { return ms.Queued == 1 }},
		{"while loading", "loading:1b", nil, false, func(ms ollamasim.ModelStats) bool { return ms.Running == 1 && !ms.Loaded }},
		{"before the first token", "pondering:1b", nil, false, func(ms ollamasim.ModelStats) bool { return ms.Running == 1 && ms.Loaded }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{glacial, loading, thinking}})
			c := s.Client()
			blockCtx, unblock := context.WithCancel(testCtx(t))
			defer unblock()
			if tc.blocker {
				go func() { _, _ = chat(blockCtx, c, &api.ChatRequest{Model: tc.model, Messages: userMsg("first")}) }()
				waitFor(t, s, "blocker running", func(st ollamasim.Stats) bool { return st.Model(tc.model).Running == 1 })
			}
			ctx, cancel := context.WithCancel(testCtx(t))
			done := make(chan error, 1)
			go func() {
				_, err := chat(ctx, c, &api.ChatRequest{Model: tc.model, Messages: userMsg("second"), Stream: tc.stream})
				done <- err
			}()
			waitFor(t, s, "request in place", func(st ollamasim.Stats) bool { return tc.ready(st.Model(tc.model)) })
			cancel()
			<-done
			waitFor(t, s, "cancellation seen", func(st ollamasim.Stats) bool {
				return st.Cancelled == 1 && st.Model(tc.model).Cancelled == 1
			})
			var got []string
			for _, r := range s.Cancellations() {
				got = append(got, r.Model)
			}
			if len(got) != 1 || got[0] != tc.model {
				t.Errorf("cancellations %v, want one for %s", got, tc.model)
			}
		})
	}
}
