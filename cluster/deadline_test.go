package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
)

// TestForwardedCallPastItsDeadlineProposesNothing sends the leader a
// forwarded apply that arrives with no time left, as a request queued
// behind others would: the leader refuses it before raft sees it, so a
// caller that gave up never has its write applied later.
func TestForwardedCallPastItsDeadlineProposesNothing(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	l, f := tc.leader(), tc.followers()[0]
	entry, err := state.Encode(putCmd("late", 1, ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, left := range []string{"0", "-5"} {
		body, _ := json.Marshal(applyRequest{Entry: entry})
		req, _ := http.NewRequest("POST", "https://"+l.cfg.HTTPAddr+routePrefix+"apply", bytes.NewReader(body))
		req.Header.Set(forwardedHeader, "1")
		req.Header.Set(timeoutHeader, left)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = decodeError(resp)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !errors.Is(err, ErrExpired) {
			t.Fatalf("%s ms left: %d %v", left, resp.StatusCode, err)
		}
	}
	// A write after it commits; the late one is not in the state.
	tc.put(f, "after", 1)
	if got := tc.replicasOf(l, "late"); got != -1 {
		t.Fatalf("expired write applied: %d", got)
	}
}

// TestMalformedDeadlineRefused: a forwarded call whose deadline header
// does not parse is refused, not run without a deadline.
func TestMalformedDeadlineRefused(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	l := tc.leader()
	body, _ := json.Marshal(struct{}{})
	req, _ := http.NewRequest("POST", "https://"+l.cfg.HTTPAddr+routePrefix+"read-index", bytes.NewReader(body))
	req.Header.Set(forwardedHeader, "1")
	req.Header.Set(timeoutHeader, "bad")
	resp, err := tc.followers()[0].client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a malformed deadline: %d", resp.StatusCode)
	}
}

// TestCallerThatLeftStartsNothing: once the caller's context has ended,
// onLeader makes no attempt, even when a leader is known.
func TestCallerThatLeftStartsNothing(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	n := tc.nodes[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := n.c.Apply(ctx, putCmd("gone", 1, ""))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("apply for a caller that left: %v", err)
	}
	tc.put(n, "after", 1)
	if got := tc.replicasOf(n, "gone"); got != -1 {
		t.Fatalf("write of a caller that left applied: %d", got)
	}
}

// TestStatusWithoutALeader isolates a follower: its view says there is no
// leader, which node led last and since when, and calls the other members
// unknown rather than ready.
func TestStatusWithoutALeader(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	l, f := tc.leader(), tc.followers()[0]
	tc.net.Isolate(f.id)
	defer tc.net.Heal()
	cut := time.Now()
	var st Status
	testwait.Until(t, 10*time.Second, func() bool {
		st, _ = f.c.Status(ctxFor(t, time.Second))
		return st.Leader == ""
	}, func() string { return "the isolated follower still names a leader" })
	if st.LastLeader != l.id || st.NoLeaderSince == nil || st.NoLeaderSince.Before(cut.Add(-time.Second)) || st.Warning == "" {
		t.Fatalf("leaderless status %+v", st)
	}
	for _, m := range st.Members {
		want := "unknown"
		if m.ID == f.id {
			want = "ready"
		}
		if m.Status != want || (m.ID != f.id && m.StateStatus != "ready") {
			t.Fatalf("member %+v, want status %s", m, want)
		}
	}
	tc.net.Heal()
	testwait.For(t, 10*time.Second, "a leader again", func() bool {
		st, _ = f.c.Status(ctxFor(t, time.Second))
		return st.Leader != "" && st.Warning == "" && st.NoLeaderSince == nil
	})
}
