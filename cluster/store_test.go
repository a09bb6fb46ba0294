package cluster

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// flakyStable fails its first fails writes.
type flakyStable struct {
	raft.StableStore
	fails atomic.Int32
	sets  atomic.Int32
}

func (f *flakyStable) SetUint64(key []byte, val uint64) error {
	f.sets.Add(1)
	if f.fails.Add(-1) >= 0 {
		return syscall.EROFS
	}
	return f.StableStore.SetUint64(key, val)
}

// TestStableWritesWait: raft panics on a failed write of its term or
// vote, so a failed write is retried until it succeeds, and never
// reported done before; shut ends the waiting.
func TestStableWritesWait(t *testing.T) {
	f := &flakyStable{StableStore: raft.NewInmemStore()}
	f.fails.Store(3)
	s := newClosingStable(f)
	if err := s.SetUint64([]byte("k"), 7); err != nil {
		t.Fatal(err)
	}
	if v, err := f.GetUint64([]byte("k")); err != nil || v != 7 || f.sets.Load() != 4 {
		t.Fatalf("after three failures: %d, %v, %d attempts", v, err, f.sets.Load())
	}
	f.fails.Store(1 << 30)
	done := make(chan error, 1)
	go func() { done <- s.SetUint64([]byte("k"), 8) }()
	for f.sets.Load() < 6 {
		select {
		case err := <-done:
			t.Fatalf("a write that cannot succeed returned %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.shut()
	if err := <-done; err != nil {
		t.Fatalf("a write dropped at shut: %v", err)
	}
	if v, _ := f.GetUint64([]byte("k")); v != 7 {
		t.Fatalf("the failed write shows: %d", v)
	}
}

// TestDiskErrorsOfAWrite: a leader whose append found no room wrote and
// sent nothing, so the write is retried at the next leader; any other
// failed append may have reached the disk, so its outcome is unknown.
// Neither is an internal error.
func TestDiskErrorsOfAWrite(t *testing.T) {
	if err := raftErr(diskErr("append to the raft log", syscall.ENOSPC)); !errors.Is(err, errRetry) || !retriable(err) {
		t.Fatalf("a full disk: %v", err)
	}
	if err := raftErr(diskErr("append to the raft log", syscall.EDQUOT)); !errors.Is(err, errRetry) {
		t.Fatalf("over quota: %v", err)
	}
	for _, e := range []error{syscall.EIO, syscall.EROFS} {
		if err := raftErr(diskErr("append to the raft log", e)); !errors.Is(err, ErrIndeterminate) || errors.Is(err, errRetry) {
			t.Fatalf("%v: %v", e, err)
		}
	}
}

// TestStorageErrorOverTheWire: a leader that cannot write its data
// directory answers a forwarded call with "storage"; the forwarding node
// tries again (the sick leader hands its leadership over) instead of
// passing the leader's disk trouble on to its own client.
func TestStorageErrorOverTheWire(t *testing.T) {
	code, status := codeOf(fmt.Errorf("%w /data: raft log failing", ErrStorage))
	if code != "storage" || status != 503 {
		t.Fatalf("codeOf = %s %d", code, status)
	}
	if err := decodeError(&http.Response{StatusCode: status, Status: "503",
		Body: io.NopCloser(strings.NewReader(`{"code":"storage","error":"cannot write"}`))}); !retriable(err) {
		t.Fatalf("a peer's storage error: %v, not retried", err)
	}
}
