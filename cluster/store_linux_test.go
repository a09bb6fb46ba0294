//go:build linux

package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// These tests fill a tmpfs they mount (Linux, root or CAP_SYS_ADMIN).

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it at cleanup; it skips the test where mounting is not permitted.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("mounting a tmpfs is not permitted here (%v): this test needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillAllBut fills the file system of dir but for about leave bytes; it
// returns the filler's path.
func fillAllBut(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(max(n-leave, 0)); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLogGoesOnAfterAFailedRotation: when the disk has room to seal a
// segment but not to start the next, raft-wal's rotation fails; it then
// refuses every later append ("segment is sealed"), and every truncation
// ("file exists": the file it could not preallocate stays), even once
// space is freed. The store reopens it, and keeps every entry.
func TestLogGoesOnAfterAFailedRotation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(t *testing.T, s *walStore, next uint64) uint64 // what raft does next; returns the next index
	}{
		{name: "raft appends", after: func(t *testing.T, s *walStore, next uint64) uint64 { return next }},
		{name: "raft installs a snapshot: empties the log, appends after it", after: func(t *testing.T, s *walStore, next uint64) uint64 {
			if err := s.DeleteRange(1, next-1); err != nil {
				t.Fatalf("empty the log once space is free: %v", err)
			}
			return next + 1000
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { rotationFails(t, tc.after) })
	}
}

func rotationFails(t *testing.T, after func(*testing.T, *walStore, uint64) uint64) {
	const segment = 256 << 10
	dir := mountTmpfs(t, 4<<20)
	health := newDiskHealth(dir, zap.NewNop())
	s, err := openWALStore(dir, segment, hclog.NewNullLogger(), health)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := uint64(1)
	put := func() error {
		err := s.StoreLogs([]*raft.Log{{Index: next, Term: 1, Data: []byte(strings.Repeat("x", 1000))}})
		if err == nil {
			next++
		}
		return err
	}
	for range 10 {
		if err := put(); err != nil {
			t.Fatal(err)
		}
	}
	filler := fillAllBut(t, dir, 64<<10)
	var failed error
	for i := 0; i < 2*segment/1000 && failed == nil; i++ {
		failed = put()
	}
	if !errors.Is(failed, errDiskFull) || !health.failing(kindLog) {
		t.Fatalf("the append that found no room for a new segment: %v (health %v)", failed, health.err())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	next = after(t, s, next)
	first := uint64(1) // every entry is kept, or none before next
	if l, _ := s.LastIndex(); l == 0 {
		first = next
	}
	for range 3 {
		if err := put(); err != nil {
			t.Fatalf("append %d once space is free: %v", next, err)
		}
	}
	if health.failing(kindLog) {
		t.Fatalf("still failing: %v", health.err())
	}
	for i := first; i < next; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || len(l.Data) != 1000 {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
}

// TestFailedSnapshotLeavesNothing: raft's file store keeps the temporary
// directory of a snapshot it could not write; the store removes it, and
// records the failure until a snapshot succeeds.
func TestFailedSnapshotLeavesNothing(t *testing.T) {
	dir := mountTmpfs(t, 1<<20)
	health := newDiskHealth(dir, zap.NewNop())
	s, err := newSnapshotStore(dir, hclog.NewNullLogger(), health)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	snap := func(index uint64, size int) error {
		sink, err := s.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, trans)
		if err != nil {
			return err
		}
		if _, err := sink.Write(make([]byte, size)); err != nil {
			return errors.Join(err, sink.Cancel())
		}
		return sink.Close()
	}
	if err := snap(1, 1000); err != nil {
		t.Fatal(err)
	}
	filler := fillAllBut(t, dir, 32<<10)
	if err := snap(2, 256<<10); err == nil {
		t.Fatal("a snapshot larger than the free space was written")
	}
	if err := snap(3, 1000); err != nil {
		// The metadata may not fit either; that fails too, and is swept.
		t.Logf("a small snapshot on the full disk: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("a failed snapshot left %s", e.Name())
		}
	}
	if !health.failing(kindSnapshot) {
		os.Remove(filler)
		t.Fatal("the failed snapshot is not recorded")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := snap(4, 1000); err != nil || health.failing(kindSnapshot) {
		t.Fatalf("a snapshot once space is free: %v (%v)", err, health.err())
	}
}
