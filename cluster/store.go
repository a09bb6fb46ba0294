package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/etcd/pkg/fileutil"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
)

// errDiskWrite marks a failed write to the data directory; errDiskFull
// one refused for want of space (nothing was written). raftErr turns a
// leader's failed append of a write into a retry (full) or an unknown
// outcome (any other failure), not an internal error.
var (
	errDiskWrite = errors.New("cluster: this node could not write its data directory")
	errDiskFull  = errors.New("no space left")
)

// diskErr wraps a failed write of what.
func diskErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w: %s: %w", errDiskWrite, errDiskFull, what, err)
	}
	return fmt.Errorf("%w: %s: %w", errDiskWrite, what, err)
}

// walStore is raft's log and stable store: raft-wal and the meta store
// that keeps its segment list and raft's term and vote. It records every
// write in the disk health, and reopens both in place after a failed
// segment rotation: raft-wal v0.4 does not retry a rotation that failed
// (the disk had no room for the next file), and until it is reopened
// every append fails with "segment is sealed", even once space is free.
type walStore struct {
	dir     string
	segment int
	logger  hclog.Logger
	health  *diskHealth
	mu      sync.RWMutex // write-held while reopening
	wal     *raftwal.WAL // nil only after a reopen given up at Close
	meta    *metadb.BoltMetaDB
	closing chan struct{}
	once    sync.Once
}

var (
	_ raft.LogStore          = (*walStore)(nil)
	_ raft.StableStore       = (*walStore)(nil)
	_ raft.MonotonicLogStore = (*walStore)(nil)
)

// IsMonotonic tells raft the log cannot have gaps (raft-wal's does not),
// so that after a snapshot restore raft empties it instead of appending
// past a gap, which raft-wal refuses.
func (s *walStore) IsMonotonic() bool { return true }

func openWALStore(dir string, segment int, logger hclog.Logger, health *diskHealth) (*walStore, error) {
	s := &walStore{dir: dir, segment: segment, logger: logger, health: health, closing: make(chan struct{})}
	_ = os.Remove(s.probePath()) // left by a process that died while probing
	return s, s.open()
}

// probePath is where reopen checks that a new segment fits.
func (s *walStore) probePath() string { return filepath.Join(s.dir, ".segment-probe") }

// open opens the WAL with a meta store of its own: raft-wal does not
// close a meta store it opened itself.
func (s *walStore) open() error {
	meta := &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(s.dir, raftwal.WithLogger(s.logger), raftwal.WithMetaStore(meta), raftwal.WithSegmentSize(s.segment))
	if err != nil {
		meta.Close()
		return err
	}
	s.wal, s.meta = wal, meta
	return nil
}

// abort makes a reopen under way give up (Close calls it before it waits
// for raft, which may be the one reopening).
func (s *walStore) abort() { s.once.Do(func() { close(s.closing) }) }

// Close closes the WAL and its meta store.
func (s *walStore) Close() error {
	s.abort()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wal == nil {
		return nil
	}
	return errors.Join(s.wal.Close(), s.meta.Close())
}

// StoreLogs appends entries.
func (s *walStore) StoreLogs(logs []*raft.Log) error {
	return s.write("append to the raft log", func(w *raftwal.WAL) error { return w.StoreLogs(logs) })
}

// StoreLog appends one entry.
func (s *walStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// DeleteRange removes entries (compaction, a conflicting suffix, or the
// whole log after a snapshot is installed).
func (s *walStore) DeleteRange(min, max uint64) error {
	return s.write("delete from the raft log", func(w *raftwal.WAL) error { return w.DeleteRange(min, max) })
}

// write runs a change of the log; when it fails while the log's next file
// would fit, it reopens the WAL and runs it once more. A rotation that
// failed for want of space leaves raft-wal sealed (every append fails) and
// a file it never removes (every later rotation, and the truncation
// after a snapshot install, fails with "file exists"); reopening recovers
// from both.
func (s *walStore) write(what string, op func(*raftwal.WAL) error) error {
	err := s.run(op)
	if err != nil {
		if rerr := s.reopen(); rerr == nil {
			err = s.run(op)
		} else if errors.Is(err, types.ErrSealed) {
			err = rerr // the reason it stays sealed
		}
	}
	s.health.wrote(kindLog, err)
	return diskErr(what, err)
}

func (s *walStore) run(op func(*raftwal.WAL) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.wal == nil {
		return ErrClosed
	}
	return op(s.wal)
}

// reopen closes and opens the WAL again, so that it recovers from a
// failed rotation; it does nothing while the next segment would not fit,
// and says so.
func (s *walStore) reopen() error {
	if err := fits(s.probePath(), s.segment); err != nil {
		return fmt.Errorf("the raft log needs %d bytes for its next file: %w", s.segment, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := errors.Join(s.wal.Close(), s.meta.Close()); err != nil {
		s.logger.Warn("closing the raft log to reopen it", "error", err)
	}
	s.wal, s.meta = nil, nil
	for attempt := 0; ; attempt++ {
		err := s.open()
		if err == nil {
			s.logger.Warn("reopened the raft log after a failed write")
			return nil
		}
		// The space found a moment ago was taken: raft cannot go on
		// without its log, so wait for it here.
		s.health.wrote(kindLog, fmt.Errorf("reopen the raft log: %w", err))
		select {
		case <-s.closing:
			return ErrClosed
		case <-time.After(backoff(attempt, 100*time.Millisecond, 5*time.Second)):
		}
	}
}

// fits reports whether a file of size bytes can be made at path, the way
// raft-wal makes its segments (preallocated).
func fits(path string, size int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	err = fileutil.Preallocate(f, int64(size), true)
	return errors.Join(err, f.Close())
}

// read runs fn on the open WAL; ErrClosed after a reopen given up at
// Close.
func read[T any](s *walStore, fn func(*raftwal.WAL) (T, error)) (T, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.wal == nil {
		var zero T
		return zero, ErrClosed
	}
	return fn(s.wal)
}

func (s *walStore) FirstIndex() (uint64, error) {
	return read(s, func(w *raftwal.WAL) (uint64, error) { return w.FirstIndex() })
}

func (s *walStore) LastIndex() (uint64, error) {
	return read(s, func(w *raftwal.WAL) (uint64, error) { return w.LastIndex() })
}

// GetLog makes entries before the first index unreadable. raft-wal keeps
// compacted entries of its current segment readable, so without this a
// far-behind follower would be fed entries raft considers gone instead
// of the snapshot.
func (s *walStore) GetLog(index uint64, out *raft.Log) error {
	_, err := read(s, func(w *raftwal.WAL) (struct{}, error) {
		if first, err := w.FirstIndex(); err == nil && index < first {
			return struct{}{}, raft.ErrLogNotFound
		}
		return struct{}{}, w.GetLog(index, out)
	})
	return err
}

func (s *walStore) Set(key, val []byte) error {
	err := s.run(func(w *raftwal.WAL) error { return w.Set(key, val) })
	s.health.wrote(kindStable, err)
	return diskErr("save raft's term and vote", err)
}

func (s *walStore) SetUint64(key []byte, val uint64) error {
	err := s.run(func(w *raftwal.WAL) error { return w.SetUint64(key, val) })
	s.health.wrote(kindStable, err)
	return diskErr("save raft's term and vote", err)
}

func (s *walStore) Get(key []byte) ([]byte, error) {
	return read(s, func(w *raftwal.WAL) ([]byte, error) { return w.Get(key) })
}

func (s *walStore) GetUint64(key []byte) (uint64, error) {
	return read(s, func(w *raftwal.WAL) (uint64, error) { return w.GetUint64(key) })
}

// closingStable is the stable store raft gets. raft panics on any failed
// write of its term or vote, which would end the process, and the node
// with it, at the first election after its disk fills or turns read-only.
// So a failed write is retried until it succeeds: raft waits meanwhile
// (the node takes no part in elections or replication, as if cut off,
// while it goes on serving from its state), and goes on once the disk is
// fixed. A write is never reported done when it is not.
//
// shut (by Close) ends the waiting: the writes after it are dropped. That
// is safe because Close cuts every connection first, so no peer can learn
// of a dropped write. (raft's transport also answers heartbeats on its own
// goroutines, which Shutdown does not wait for.)
type closingStable struct {
	raft.StableStore
	mu     sync.RWMutex // read-held by a write's attempt
	closed bool
	shutCh chan struct{}
}

func newClosingStable(s raft.StableStore) *closingStable {
	return &closingStable{StableStore: s, shutCh: make(chan struct{})}
}

// shut makes later writes no-ops and ends the retries; it returns once no
// attempt is under way.
func (s *closingStable) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.shutCh)
	}
}

func (s *closingStable) Set(key, val []byte) error {
	return s.write(func() error { return s.StableStore.Set(key, val) })
}

func (s *closingStable) SetUint64(key []byte, val uint64) error {
	return s.write(func() error { return s.StableStore.SetUint64(key, val) })
}

// write runs one write until it succeeds or the store is shut.
func (s *closingStable) write(fn func() error) error {
	for attempt := 0; ; attempt++ {
		if s.try(fn) {
			return nil
		}
		select {
		case <-s.shutCh:
			return nil
		case <-time.After(backoff(attempt, 50*time.Millisecond, 2*time.Second)):
		}
	}
}

// try runs fn unless the store is shut; it reports whether it is done.
func (s *closingStable) try(fn func() error) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed || fn() == nil
}
