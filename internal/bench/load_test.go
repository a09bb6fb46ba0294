package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func target(srv *httptest.Server, path string, kind Kind, expect string) Target {
	addr := strings.TrimPrefix(srv.URL, "http://")
	t := Target{Name: path, Client: NewClient(addr, kind != Unary, 5*time.Second), URL: srv.URL + path, Body: []byte(`{}`), Kind: kind}
	if expect != "" {
		t.Expect = []byte(expect)
	}
	return t
}

// peakServer answers every request after delay and counts the most
// requests it held at once.
func peakServer(t *testing.T, delay time.Duration) (*httptest.Server, *atomic.Int32) {
	var inFlight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(delay)
		fmt.Fprint(w, `{"done":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &peak
}

// TestRunIsOpenLoop checks that requests start on schedule even when the
// earlier ones have not been answered.
func TestRunIsOpenLoop(t *testing.T) {
	srv, peak := peakServer(t, 200*time.Millisecond)
	start := time.Now()
	res := Run(context.Background(), target(srv, "/api/chat", Unary, `"done":true`), Load{Rate: 100, Duration: 200 * time.Millisecond})
	took := time.Since(start)
	if res.Sent != 20 || res.OK != 20 || res.Errors != 0 || len(res.Latency) != 20 {
		t.Fatalf("sent %d ok %d errors %d (%s), want 20 20 0", res.Sent, res.OK, res.Errors, res.FirstError)
	}
	// Closed-loop, one at a time, this would take 20 x 200ms = 4s.
	if took > 2*time.Second || peak.Load() < 5 {
		t.Errorf("took %s with at most %d requests in flight: the load waited for answers", took, peak.Load())
	}
	s := Summarize(res.Latency)
	if s.Min < 200*time.Millisecond {
		t.Errorf("latency %s is below the server's 200ms", s.Min)
	}
}

func TestRunCountsErrors(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 {
		case 0:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 1:
			fmt.Fprint(w, `{"done":true}`)
		default:
			fmt.Fprint(w, `{"done":false}`)
		}
	}))
	defer srv.Close()
	res := Run(context.Background(), target(srv, "/api/chat", Unary, `"done":true`), Load{Rate: 300, Duration: 100 * time.Millisecond})
	if res.Sent != 30 || res.OK != 10 || res.Errors != 20 || res.FirstError == "" {
		t.Errorf("sent %d ok %d errors %d first %q, want 30 10 20 and an error", res.Sent, res.OK, res.Errors, res.FirstError)
	}
}

func TestRunStreams(t *testing.T) {
	const events = 50
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sse := r.URL.Path == "/sse"
		cut := r.URL.Path == "/cut"
		for i := range events {
			if i == 1 {
				time.Sleep(5 * time.Millisecond)
			}
			if cut && i == events/2 {
				return
			}
			if sse {
				fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d\"}}]}\n\n", i)
			} else {
				fmt.Fprintf(w, "{\"message\":{\"content\":\"t%d\"},\"done\":%v}\n", i, i == events-1)
			}
			w.(http.Flusher).Flush()
		}
		if sse {
			fmt.Fprint(w, "data: [DONE]\n\n")
		}
	}))
	defer srv.Close()
	load := Load{Rate: 50, Duration: 200 * time.Millisecond}

	for _, tc := range []struct {
		path string
		kind Kind
	}{{"/sse", SSE}, {"/ndjson", NDJSON}} {
		res := Run(context.Background(), target(srv, tc.path, tc.kind, ""), load)
		if res.OK != 10 || res.Streams != 10 || res.Events != 10*events || res.Incomplete != 0 || len(res.TTFT) != 10 {
			t.Errorf("%s: ok %d streams %d events %d incomplete %d ttfts %d (%s), want 10 10 %d 0 10",
				tc.path, res.OK, res.Streams, res.Events, res.Incomplete, len(res.TTFT), res.FirstError, 10*events)
		}
		for i, ttft := range res.TTFT {
			if ttft <= 0 || ttft >= res.Latency[i] {
				t.Errorf("%s: TTFT %s not within (0, %s)", tc.path, ttft, res.Latency[i])
			}
		}
	}
	res := Run(context.Background(), target(srv, "/cut", NDJSON, ""), load)
	if res.OK != 0 || res.Incomplete != 10 || res.Events != 10*events/2 {
		t.Errorf("cut streams: ok %d incomplete %d events %d, want 0 10 %d", res.OK, res.Incomplete, res.Events, 10*events/2)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := Run(ctx, target(srv, "/", Unary, ""), Load{Rate: 10, Duration: time.Hour})
	if time.Since(start) > 2*time.Second || res.Sent > 3 {
		t.Errorf("ran %s and sent %d after the context ended", time.Since(start), res.Sent)
	}
}

// TestWaitUntil checks that WaitUntil waits for its time on a reused
// timer and stops waiting when the context ends.
func TestWaitUntil(t *testing.T) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for range 2 {
		at := time.Now().Add(20 * time.Millisecond)
		if !WaitUntil(context.Background(), timer, at) {
			t.Fatal("WaitUntil = false with a live context")
		}
		if time.Now().Before(at) {
			t.Fatal("WaitUntil returned before its time")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if WaitUntil(ctx, timer, start.Add(time.Hour)) {
		t.Fatal("WaitUntil = true after the context ended")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("WaitUntil took %s after the context ended", d)
	}
}

// TestRunSendsTheToken: a target with a token sends it as a bearer token
// on every request; one without sends no Authorization header.
func TestRunSendsTheToken(t *testing.T) {
	var with, without atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer tok":
			with.Add(1)
		case "":
			without.Add(1)
		}
		fmt.Fprint(w, `{"done":true}`)
	}))
	defer srv.Close()
	tg := target(srv, "/api/chat", Unary, `"done":true`)
	Run(context.Background(), tg, Load{Rate: 50, Duration: 100 * time.Millisecond})
	tg.Token = "tok"
	res := Run(context.Background(), tg, Load{Rate: 50, Duration: 100 * time.Millisecond})
	if res.OK != 5 || with.Load() != 5 || without.Load() != 5 {
		t.Fatalf("ok %d, %d with the token, %d without", res.OK, with.Load(), without.Load())
	}
}

// TestRunClosedLoop checks that a closed loop keeps exactly its clients'
// requests in flight and stops at MaxRequests or at the end of Duration.
func TestRunClosedLoop(t *testing.T) {
	srv, peak := peakServer(t, 2*time.Millisecond)
	tg := target(srv, "/api/chat", Unary, `"done":true`)
	res := Run(context.Background(), tg, Load{Clients: 3, Duration: time.Minute, MaxRequests: 60})
	if res.Sent != 60 || res.OK != 60 || res.Errors != 0 || len(res.Latency) != 60 {
		t.Fatalf("sent %d ok %d errors %d (%s), want 60 60 0", res.Sent, res.OK, res.Errors, res.FirstError)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("at most %d requests in flight with 3 clients", p)
	}
	start := time.Now()
	res = Run(context.Background(), tg, Load{Clients: 2, Duration: 100 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second || res.Sent == 0 || res.OK != res.Sent {
		t.Errorf("a 100ms closed loop took %s, sent %d, ok %d", took, res.Sent, res.OK)
	}
	if got := (Load{Clients: 16}).Label(); got != "16 clients" {
		t.Errorf("label %q", got)
	}
	if got := (Load{Rate: 200}).Label(); got != "200/s" {
		t.Errorf("label %q", got)
	}
}

func TestLoadSplitKeepsTheWhole(t *testing.T) {
	l := Load{Rate: 200, Duration: 9 * time.Second, MaxRequests: 1000}
	total, spent := 0, time.Duration(0)
	for i := range 3 {
		p := l.Split(3, i)
		if p.Rate != 200 || p.Clients != 0 {
			t.Fatalf("round %d: %+v changed the rate", i, p)
		}
		total += p.MaxRequests
		spent += p.Duration
	}
	if total != 1000 || spent != l.Duration {
		t.Fatalf("three rounds make %d requests in %v, want %d in %v", total, spent, l.MaxRequests, l.Duration)
	}
	if l.Split(1, 0) != l {
		t.Fatalf("one round changed the load: %+v", l.Split(1, 0))
	}
}

func TestPhaseAddMergesRounds(t *testing.T) {
	a := &Phase{Result: &Result{Sent: 2, OK: 2, Latency: []time.Duration{1, 2}, Elapsed: time.Second, MaxLag: 3}, CPU: map[string]time.Duration{"sovra": 10}, SimEvents: 5}
	b := &Phase{Result: &Result{Sent: 3, OK: 2, Errors: 1, FirstError: "boom", Latency: []time.Duration{3, 4}, Elapsed: 2 * time.Second, MaxLag: 1, Events: 7}, CPU: map[string]time.Duration{"sovra": 5, "sim": 1}, SimEvents: 2}
	a.Add(b)
	r := a.Result
	if r.Sent != 5 || r.OK != 4 || r.Errors != 1 || r.FirstError != "boom" || len(r.Latency) != 4 || r.Elapsed != 3*time.Second || r.MaxLag != 3 || r.Events != 7 {
		t.Fatalf("merged result %+v", r)
	}
	if a.CPU["sovra"] != 15 || a.CPU["sim"] != 1 || a.SimEvents != 7 {
		t.Fatalf("merged CPU %v, sim events %d", a.CPU, a.SimEvents)
	}
}
