package cluster

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/cluster/state"
)

// TestUnknownTypeStopsTheNode commits, past the version gate, an entry of
// a type no node knows and that may not be skipped (as a node downgraded
// after the gate let it through would meet it): each node stops applying
// before it, so that its state never differs from what a version that
// knows the type holds; it reports why, takes no snapshot at an index
// its state never reached, and stops again at a restart.
func TestUnknownTypeStopsTheNode(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	tc.put(tc.leader(), "before", 1)
	f := tc.leader().c.raft.Apply([]byte{250, 0, '{', '}'}, 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	index := f.Index()
	for _, n := range tc.nodes {
		waitHalted(t, n, index)
		if got := n.c.Machine().Index(); got >= index {
			t.Fatalf("%s applied up to %d, past the entry at %d", n.id, got, index)
		}
		if _, err := n.c.fsm.Snapshot(); err == nil {
			t.Fatalf("%s takes snapshots while stopped", n.id)
		}
		if err := n.c.Ready(); !errors.Is(err, ErrUpgradeRequired) {
			t.Fatalf("%s Ready() = %v", n.id, err)
		}
		if tc.replicasOf(n, "before") != 1 {
			t.Fatalf("%s lost the write before the entry", n.id)
		}
	}
	n := tc.nodes[0]
	tc.restart(n)
	waitHalted(t, n, index)
}

// waitHalted waits until a node stops at the entry at index, saying why.
func waitHalted(t *testing.T, n *tnode, index uint64) {
	t.Helper()
	select {
	case <-n.c.JoinFailed():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop at the unknown type", n.id)
	}
	err := n.c.JoinError()
	var u *state.UnknownTypeError
	if !errors.Is(err, ErrUpgradeRequired) || !errors.As(err, &u) || u.Index != index || u.Type != 250 {
		t.Fatalf("%s: %v; want ErrUpgradeRequired at entry %d of type 250", n.id, err, index)
	}
	for _, want := range []string{"stopped applying the replicated log", "command type 250", "Upgrade this node"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", n.id, err, want)
		}
	}
}

// TestNewerSnapshotOnDisk: a node started on an older binary over a data
// directory whose raft snapshot a newer version wrote does not start, and
// says why (not raft's "failed to load any existing snapshots").
func TestNewerSnapshotOnDisk(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	n := tc.nodes[0]
	conf, err := n.c.configuration()
	if err != nil {
		t.Fatal(err)
	}
	index := n.c.raft.LastIndex()
	tc.stop(n)
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(n.cfg.DataDir, "raft"), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, conf, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(sink, `{"version":1,"state":{"index":%d,"command_level":250}}`, index); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(n.cfg)
	if err == nil {
		c.Close()
		t.Fatal("opened over a snapshot of a newer version")
	}
	if !errors.Is(err, ErrUpgradeRequired) || !errors.Is(err, state.ErrNewerVersion) || !strings.Contains(err.Error(), "command level") {
		t.Fatalf("Open: %v; want ErrUpgradeRequired and ErrNewerVersion", err)
	}
}

// TestNewerSnapshotFromLeader: a follower sent a snapshot whose state it
// cannot hold (as an old node behind a leader of a newer version would
// be) stops with the reason, instead of failing the install at every
// retry of the leader; the others go on.
func TestNewerSnapshotFromLeader(t *testing.T) {
	timings := fastTimings()
	timings.TrailingLogs, timings.SnapshotThreshold = 2, 1<<20
	tc := newCluster(t, testOpts{n: 3, timings: &timings})
	leader := tc.leader()
	behind := tc.followers()[0]
	tc.stop(behind)
	s := leader.c.machine.Snapshot()
	s.CommandLevel = 250 // what a newer version's state says of itself
	leader.c.machine.Restore(s)
	for i := range 5 {
		tc.put(leader, fmt.Sprintf("while-away-%d", i), 1)
	}
	if err := leader.c.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	tc.start(behind)
	select {
	case <-behind.c.JoinFailed():
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not stop at a snapshot it cannot hold")
	}
	if err := behind.c.JoinError(); !errors.Is(err, ErrUpgradeRequired) || !errors.Is(err, state.ErrNewerVersion) {
		t.Fatalf("JoinError() = %v", err)
	}
	tc.put(leader, "after", 1)
}
