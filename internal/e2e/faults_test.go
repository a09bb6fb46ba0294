package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
)

// hangupBound bounds the time from a client's hang-up to the moment the
// backend sees its request cancelled: milliseconds in practice (a failed
// write, or a 100ms look at the socket); a stalled request has nothing
// else that could end it, so a few seconds still prove the hang-up did it
// without failing on a loaded machine.
const hangupBound = 3 * time.Second

// These tests inject backend faults with the simulator and check what an
// OpenAI SDK client sees through a node.

func TestMidStreamDropEndsWithErrorEvent(t *testing.T) {
	tg := simTarget(t, ollamasim.Config{ResponseTokens: 20})
	n := testnode.Start(t, tg.ollamaURL)
	tg.sim.SetDropAfter(3)
	c := sdk(n.URL())
	st := c.Chat.Completions.NewStreaming(testCtx(t), userChat(tg.chat, "hi"))
	chunks := 0
	for st.Next() {
		chunks++
	}
	if chunks == 0 {
		t.Fatal("no chunk reached the client before the drop")
	}
	if st.Err() == nil {
		t.Fatalf("a stream cut after %d chunks looked like a success to the SDK", chunks)
	}
}

func TestBackendSeesClientHangup(t *testing.T) {
	cases := []struct {
		name   string
		stream bool
	}{{"stream", true}, {"non-stream", false}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := simTarget(t, ollamasim.Config{})
			n := testnode.Start(t, tg.ollamaURL)
			tg.sim.SetStallAfter(2) // the backend holds the request until cancelled
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := sdk(n.URL())
			started := make(chan struct{})
			go func() {
				if tc.stream {
					st := c.Chat.Completions.NewStreaming(ctx, userChat(tg.chat, "hi"))
					if st.Next() {
						close(started)
					}
					for st.Next() {
					}
					return
				}
				_, _ = c.Chat.Completions.New(ctx, userChat(tg.chat, "hi"))
			}()
			if tc.stream {
				<-started
			} else {
				waitSim(t, tg.sim, func(s ollamasim.Stats) bool { return s.Stalled == 1 })
			}
			hungUp := time.Now()
			cancel()
			waitSim(t, tg.sim, func(s ollamasim.Stats) bool { return s.Cancelled == 1 })
			recs := tg.sim.Cancellations()
			if len(recs) != 1 {
				t.Fatalf("%d cancellations recorded", len(recs))
			}
			if d := recs[0].End.Sub(hungUp); d > hangupBound {
				t.Fatalf("the backend saw the hang-up after %v, want within %v", d, hangupBound)
			}
		})
	}
}

func TestOverloadedBackendGets503WithRetryAfter(t *testing.T) {
	tg := simTarget(t, ollamasim.Config{Parallel: 1, MaxQueue: ollamasim.NoQueue})
	n := testnode.Start(t, tg.ollamaURL)
	tg.sim.SetStallAfter(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := sdk(n.URL())
	go func() { _, _ = c.Chat.Completions.New(ctx, userChat(tg.chat, "hold the slot")) }()
	waitSim(t, tg.sim, func(s ollamasim.Stats) bool { return s.Model(tg.chat).Running == 1 })

	_, err := c.Chat.Completions.New(testCtx(t), userChat(tg.chat, "no room"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error, got %v", err)
	}
	if apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", apiErr.StatusCode, apiErr.Response.Header.Get("Retry-After"))
	}
}

func TestUnreachableAndFailingBackend(t *testing.T) {
	tg := simTarget(t, ollamasim.Config{})
	n := testnode.Start(t, tg.ollamaURL)
	c := sdk(n.URL())
	cases := []struct {
		name   string
		fault  ollamasim.Faults
		status int
		code   string
		ready  int
	}{
		{name: "refused", fault: ollamasim.Faults{Refuse: true}, status: 503, code: "backend_unavailable", ready: 503},
		{name: "runner crashed", fault: ollamasim.Faults{Fail: true}, status: 502, code: "backend_error", ready: 200},
		{name: "healthy again", status: 200, ready: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tg.sim.SetFaults(tc.fault); err != nil {
				t.Fatal(err)
			}
			_, err := c.Chat.Completions.New(testCtx(t), userChat(tg.chat, "hi"))
			var apiErr *openai.Error
			switch {
			case tc.status == 200 && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.status != 200 && (!errors.As(err, &apiErr) || apiErr.StatusCode != tc.status || apiErr.Code != tc.code):
				t.Fatalf("want %d %s, got %v", tc.status, tc.code, err)
			}
			resp, err := http.Get(n.URL() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.ready {
				t.Errorf("/readyz %d, want %d", resp.StatusCode, tc.ready)
			}
		})
	}
}

// waitSim waits until the simulator's stats satisfy cond.
func waitSim(t *testing.T, sim *ollamasim.Server, cond func(ollamasim.Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitFor(ctx, cond); err != nil {
		t.Fatalf("simulator never reached the expected state: %v (stats %+v)", err, sim.Stats())
	}
}
