package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
)

func TestFormation(t *testing.T) {
	for _, tt := range []struct {
		name            string
		opts            testOpts
		voters, nonvote int
	}{
		{"3 bootstrap+join", testOpts{n: 3}, 3, 0},
		{"3 bootstrap-expect", testOpts{n: 3, expect: true}, 3, 0},
		{"5 bootstrap+join", testOpts{n: 5, maxVoters: 5}, 5, 0},
		{"5 bootstrap-expect", testOpts{n: 5, expect: true, maxVoters: 5}, 5, 0},
		{"5 bootstrap+join capped at 3 voters", testOpts{n: 5}, 3, 2},
		{"5 bootstrap-expect capped at 3 voters", testOpts{n: 5, expect: true}, 3, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newCluster(t, tt.opts)
			tc.waitVoters(tt.voters, tt.nonvote)
			// A write through every node is seen by a linearizable read on
			// every node, and all state machines agree.
			for i, n := range tc.nodes {
				tc.put(n, fmt.Sprintf("d%d", i), i+1)
			}
			for _, n := range tc.nodes {
				for i := range tc.nodes {
					if got := tc.replicasOf(n, fmt.Sprintf("d%d", i)); got != i+1 {
						t.Fatalf("%s reads d%d = %d, want %d", n.id, i, got, i+1)
					}
				}
			}
			tc.waitConverged()
			st, err := tc.nodes[len(tc.nodes)-1].c.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Leader == "" || len(st.Members) != tt.opts.n {
				t.Fatalf("status %+v", st)
			}
			for _, m := range st.Members {
				if m.Status != string(state.NodeReady) || m.HTTPAddr == "" {
					t.Fatalf("member %+v", m)
				}
			}
		})
	}
}

func TestLeaderKilled(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	old := tc.leader()
	tc.put(old, "before", 1)
	tc.stop(old)
	l := tc.leader()
	if l == old {
		t.Fatal("stopped node still leads")
	}
	for _, n := range tc.running() {
		tc.put(n, "after-"+n.id, 2)
	}
	for _, n := range tc.running() {
		if tc.replicasOf(n, "before") != 1 || tc.replicasOf(n, "after-"+l.id) != 2 {
			t.Fatalf("%s lost writes", n.id)
		}
	}
	tc.start(old)
	tc.waitRegistered(tc.nodes...)
	if got := tc.replicasOf(old, "after-"+l.id); got != 2 {
		t.Fatalf("restarted old leader reads %d", got)
	}
	tc.waitConverged()
}

func TestFollowerCaughtUpBySnapshot(t *testing.T) {
	timings := fastTimings()
	timings.SnapshotThreshold, timings.TrailingLogs, timings.SnapshotInterval = 16, 8, 50*time.Millisecond
	tc := newCluster(t, testOpts{n: 3, timings: &timings})
	f := tc.followers()[0]
	tc.stop(f)
	l := tc.leader()
	for i := range 100 {
		tc.put(l, fmt.Sprintf("d%d", i), i)
	}
	// Compact every running node's log well past the follower, so that
	// whoever leads when it comes back (leadership may move on a loaded
	// machine) must send a snapshot.
	for _, n := range tc.running() {
		if err := n.c.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatal(err)
		}
	}
	tc.start(f)
	testwait.For(t, 20*time.Second, "follower caught up", func() bool {
		return f.c.Machine().Index() >= l.c.Machine().Index()
	})
	if f.c.fsm.restores.Load() == 0 {
		t.Fatal("follower caught up without a snapshot install")
	}
	if got := tc.replicasOf(f, "d99"); got != 99 {
		t.Fatalf("d99 = %d", got)
	}
	tc.waitConverged()
}

func TestWholeClusterRestart(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	for i := range 10 {
		tc.put(tc.nodes[i%3], fmt.Sprintf("d%d", i), i)
	}
	before := tc.waitConverged()
	tc.stopAll()
	for _, n := range tc.nodes {
		tc.start(n)
	}
	tc.leader()
	for _, n := range tc.nodes {
		if got := tc.replicasOf(n, "d9"); got != 9 {
			t.Fatalf("%s: d9 = %d after restart", n.id, got)
		}
	}
	after := tc.waitConverged()
	var a, b *state.State
	var err error
	if a, err = state.Decode(bytesReader(before)); err != nil {
		t.Fatal(err)
	}
	if b, err = state.Decode(bytesReader(after)); err != nil {
		t.Fatal(err)
	}
	if len(a.Deployments) != len(b.Deployments) || len(b.Nodes) != 3 {
		t.Fatalf("state changed over restart: %d/%d deployments, %d nodes", len(a.Deployments), len(b.Deployments), len(b.Nodes))
	}
}

func TestRestartedNodeRejoins(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	f := tc.followers()[0]
	var joined uint64
	f.c.Machine().Read(func(s *state.State) { joined = s.Nodes[f.id].JoinedIndex })
	tc.restart(f)
	tc.put(tc.leader(), "x", 1)
	if got := tc.replicasOf(f, "x"); got != 1 {
		t.Fatalf("x = %d", got)
	}
	tc.waitVoters(3, 0)
	f.c.Machine().Read(func(s *state.State) {
		if len(s.Nodes) != 3 || s.Nodes[f.id].JoinedIndex != joined {
			t.Fatalf("restart registered again: %d nodes, joined %d then %d", len(s.Nodes), joined, s.Nodes[f.id].JoinedIndex)
		}
	})
}

func TestWritesOnAnyNodeWithIdempotencyKey(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	f := tc.followers()[0]
	ctx := ctxFor(t, 10*time.Second)
	first, err := f.c.Apply(ctx, putCmd("k", 1, "key-1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := tc.leader().c.Apply(ctx, putCmd("k", 1, "key-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.Index != first.Index {
		t.Fatalf("retry applied twice: %+v then %+v", first, again)
	}
	// Business errors come back as the outcome's error.
	cmd := putCmd("k", 1, "")
	cmd.Body = state.PutDeployment{Deployment: state.Deployment{Name: "k", Model: "m"}, Create: true}
	if _, err := f.c.Apply(ctx, cmd); !errors.Is(err, state.ErrExists) {
		t.Fatalf("create of existing: %v", err)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
