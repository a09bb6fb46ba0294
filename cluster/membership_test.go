package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
)

func TestPromotionWhenVoterRemoved(t *testing.T) {
	tc := newCluster(t, testOpts{n: 5})
	tc.waitVoters(3, 2)
	voters, _ := tc.voters()
	l := tc.leader()
	victim := tc.node(otherThan(voters, l.id))
	tc.stop(victim)
	if err := tc.followers()[0].c.Remove(ctxFor(t, 10*time.Second), victim.id); err != nil {
		t.Fatal(err)
	}
	tc.waitVoters(3, 1)
	v, _ := tc.voters()
	if slices.Contains(v, victim.id) {
		t.Fatalf("removed node still votes: %v", v)
	}
	l.c.Machine().Read(func(s *state.State) {
		if _, ok := s.Nodes[victim.id]; ok {
			t.Fatal("removed node still registered")
		}
	})
	tc.put(tc.leader(), "after-remove", 1)
}

func TestPromotionWhenVoterStaysDown(t *testing.T) {
	tc := newCluster(t, testOpts{n: 4, downAfter: 500 * time.Millisecond})
	tc.waitVoters(3, 1)
	voters, nonvoters := tc.voters()
	l := tc.leader()
	victim := tc.node(otherThan(voters, l.id))
	tc.stop(victim)
	tc.waitStatus(state.NodeDown, victim)
	testwait.For(t, 20*time.Second, "non-voter promoted and down voter demoted", func() bool {
		v, n := tc.voters()
		return len(v) == 3 && slices.Contains(v, nonvoters[0]) && slices.Equal(n, []string{victim.id})
	})
	// The demoted node comes back as a ready non-voter.
	tc.start(victim)
	tc.waitRegistered(victim)
	tc.waitVoters(3, 1)
	tc.waitConverged()
}

func TestLivenessMarksDownAndReady(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3, downAfter: 400 * time.Millisecond})
	f := tc.followers()[0]
	tc.stop(f)
	tc.waitStatus(state.NodeDown, f)
	tc.leader().c.Machine().Read(func(s *state.State) {
		if !strings.Contains(s.Nodes[f.id].StatusReason, "no heartbeat") {
			t.Fatalf("reason %q", s.Nodes[f.id].StatusReason)
		}
	})
	tc.start(f)
	tc.waitStatus(state.NodeReady, f)
	// A new leader gives members a fresh DownAfter instead of marking them
	// down at once.
	old := tc.leader()
	if err := old.c.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "a new leader", func() bool { return tc.leader() != old })
	tc.put(tc.leader(), "x", 1)
	for _, n := range tc.running() {
		if st := n.c.nodeStatus(n.id); st != state.NodeReady {
			t.Fatalf("%s is %s after leader change", n.id, st)
		}
	}
}

func TestLeaveHandsLeadershipOver(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	l := tc.leader()
	if err := l.c.Leave(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	tc.stop(l)
	nl := tc.leader()
	if nl == l {
		t.Fatal("left node still leads")
	}
	tc.waitVoters(2, 0)
	tc.put(nl, "after-leave", 1)
	nl.c.Machine().Read(func(s *state.State) {
		if _, ok := s.Nodes[l.id]; ok {
			t.Fatal("left node still registered")
		}
	})
	// The sole member of a cluster does not leave.
	single := newCluster(t, testOpts{n: 1})
	if err := single.nodes[0].c.Leave(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeatFromRemovedNode(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	err := tc.leader().c.heartbeatLocal(ctxFor(t, 5*time.Second), state.Node{ID: "ghost", HTTPAddr: "x", RaftAddr: "y"})
	if !errors.Is(err, ErrNotMember) {
		t.Fatalf("heartbeat of a stranger: %v", err)
	}
}

func otherThan(ids []string, not string) string {
	for _, id := range ids {
		if id != not {
			return id
		}
	}
	return ""
}

func TestSetNodeReregisters(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	f := tc.followers()[0]
	n := state.Node{Labels: map[string]string{"jurisdiction": "EU"}, Version: "v2", GPUs: []state.GPU{{Model: "NVIDIA H800", MemoryBytes: 80 << 30}}}
	f.c.SetNode(n)
	testwait.For(t, 10*time.Second, "new registration on every node", func() bool {
		for _, r := range tc.running() {
			ok := false
			r.c.Machine().Read(func(s *state.State) {
				got := s.Nodes[f.id]
				// A node declares labels; it does not set them.
				ok = got != nil && got.Version == "v2" && got.DeclaredLabels["jurisdiction"] == "EU" && got.Labels == nil &&
					len(got.GPUs) == 1 && got.HTTPAddr == f.cfg.HTTPAddr
			})
			if !ok {
				return false
			}
		}
		return true
	})
}
