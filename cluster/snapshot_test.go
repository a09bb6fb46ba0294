package cluster

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestSnapshotSaveRestore(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	f := tc.followers()[0]
	tc.put(f, "kept", 1)
	var snap bytes.Buffer
	if err := f.c.SaveSnapshot(ctxFor(t, 10*time.Second), &snap); err != nil {
		t.Fatal(err)
	}
	tc.put(f, "kept", 7)
	tc.put(f, "later", 2)

	saved := snap.Bytes()
	if err := f.c.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(saved), false); !errors.Is(err, ErrRestoreNotForced) {
		t.Fatalf("unforced restore: %v", err)
	}
	if got := tc.replicasOf(f, "later"); got != 2 {
		t.Fatalf("unforced restore changed the state: later = %d", got)
	}
	if err := f.c.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader([]byte("not a snapshot")), true); !errors.Is(err, ErrInvalid) {
		t.Fatalf("garbage restore: %v", err)
	}
	// A restore is not retried by the cluster when its outcome is lost (a
	// leader change while followers install it); the operator retries.
	for attempt := 0; ; attempt++ {
		err := f.c.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(saved), true)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrIndeterminate) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("restore outcome unknown, retrying: %v", err)
	}
	for _, n := range tc.nodes {
		if got := tc.replicasOf(n, "kept"); got != 1 {
			t.Fatalf("%s: kept = %d after restore", n.id, got)
		}
		if got := tc.replicasOf(n, "later"); got != -1 {
			t.Fatalf("%s: later = %d after restore", n.id, got)
		}
	}
	// The cluster goes on from the restored state.
	tc.put(tc.nodes[2], "after", 3)
	if got := tc.replicasOf(tc.nodes[0], "after"); got != 3 {
		t.Fatalf("after = %d", got)
	}
	tc.waitConverged()
}
