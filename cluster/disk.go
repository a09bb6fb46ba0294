package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/sovra/sovra/internal/ratelog"
)

// ErrStorage means this node cannot write its data directory (full,
// read-only, failing). It goes on serving inference from the state it
// has, but cannot take part in the cluster's changes, so its state falls
// behind until the disk is fixed; then it catches up by itself.
var ErrStorage = errors.New("cluster: cannot write the data directory")

// Kinds of writes to the data directory.
const (
	kindLog      = "raft log"
	kindStable   = "raft term and vote"
	kindSnapshot = "snapshot"
	kindProbe    = "test write"
)

// diskHealth is what this node knows of its data directory: the failure
// of each kind of write, from the first until that kind next succeeds.
type diskHealth struct {
	dir string
	log *zap.Logger
	lim ratelog.Limiter
	mu  sync.Mutex
	bad map[string]*diskFault
	now func() time.Time
	// change is closed and replaced when a kind starts failing.
	change chan struct{}
}

type diskFault struct {
	err   error
	since time.Time
	count int
}

func newDiskHealth(dir string, log *zap.Logger) *diskHealth {
	return &diskHealth{dir: dir, log: log, bad: map[string]*diskFault{}, now: time.Now, change: make(chan struct{})}
}

// wrote records the outcome of a write of kind.
func (h *diskHealth) wrote(kind string, err error) {
	if err == nil {
		h.recovered(kind)
		return
	}
	h.mu.Lock()
	f := h.bad[kind]
	if f == nil {
		f = &diskFault{since: h.now()}
		h.bad[kind] = f
		close(h.change)
		h.change = make(chan struct{})
	}
	f.err = err
	f.count++
	h.mu.Unlock()
	if ok, n := h.lim.Allow(kind); ok {
		h.log.Error("cannot write the data directory: this node serves inference from the state it has but takes no part "+
			"in the cluster's changes until the disk is fixed (free space in it, or make it writable again)",
			zap.String("dir", h.dir), zap.String("write", kind), zap.Error(err), zap.Int("repeated", n))
	}
}

func (h *diskHealth) recovered(kind string) {
	h.mu.Lock()
	f := h.bad[kind]
	delete(h.bad, kind)
	h.mu.Unlock()
	if f == nil {
		return
	}
	h.lim.Reset(kind)
	h.log.Warn("the data directory takes writes again", zap.String("dir", h.dir), zap.String("write", kind),
		zap.Duration("failed_for", h.now().Sub(f.since).Round(time.Millisecond)), zap.Int("failures", f.count))
}

// changed returns a channel closed when a kind of write starts failing.
func (h *diskHealth) changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.change
}

// failing reports whether writes of kind fail.
func (h *diskHealth) failing(kind string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad[kind] != nil
}

// stalled is err while a failing write keeps the node from taking new
// entries (its log, its term and vote, or any write at all), or nil.
func (h *diskHealth) stalled() error {
	if !h.failing(kindLog) && !h.failing(kindStable) && !h.failing(kindProbe) {
		return nil
	}
	return h.err()
}

// err is ErrStorage with what fails and since when, or nil.
func (h *diskHealth) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) == 0 {
		return nil
	}
	kinds := make([]string, 0, len(h.bad))
	for k := range h.bad {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return h.bad[kinds[i]].since.Before(h.bad[kinds[j]].since) })
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		f := h.bad[k]
		parts[i] = fmt.Sprintf("%s failing since %s (%d times): %v", k, f.since.UTC().Format(time.RFC3339), f.count, f.err)
	}
	return fmt.Errorf("%w %s: %s; free space in it or make it writable: until then this node serves inference "+
		"from the state it has but its state falls behind the cluster's", ErrStorage, h.dir, strings.Join(parts, "; "))
}

// probeInterval is how often the node tries a write to its data
// directory, so that a disk that fails while nothing is written is
// noticed, and one that is fixed is known fixed soon.
const probeInterval = 2 * time.Second

// probeLoop writes a small file into the data directory every
// probeInterval until ctx ends. While a write fails, a leader hands its
// leadership over (at once, then at most every 5s). After a failed
// snapshot, once a write succeeds again, it asks raft for a snapshot (at
// most every 10s), so the node does not wait for raft's own interval (2
// minutes) to know.
func (c *Cluster) probeLoop(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	var lastSnap, lastHandOver time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.disk.changed(): // a write failed: hand over at once
		}
		err := probe(filepath.Join(c.cfg.DataDir, "raft"))
		c.disk.wrote(kindProbe, err)
		if err == nil && c.disk.failing(kindSnapshot) && time.Since(lastSnap) > 10*time.Second {
			lastSnap = time.Now()
			c.retrySnapshot(ctx)
		}
		if c.disk.err() != nil && c.IsLeader() && time.Since(lastHandOver) > 5*time.Second {
			lastHandOver = time.Now()
			c.handOverSick(ctx)
		}
	}
}

// handOverSick hands the leadership to another voter: a leader that
// cannot write its data directory steps down at its next failed append,
// and until then the cluster's writes hang on its disk.
func (c *Cluster) handOverSick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := waitFuture(ctx, c.raft.LeadershipTransfer())
	c.log.Warn("handing the leadership over: this node cannot write its data directory", zap.Error(err))
}

// probe creates, writes, syncs and removes a small file in dir.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// retrySnapshot takes a snapshot now; one that has nothing new to hold
// means none is needed, which clears an earlier failure. It waits at most
// 10s (raft may itself wait for the disk).
func (c *Cluster) retrySnapshot(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := waitFuture(ctx, c.raft.Snapshot())
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		c.disk.recovered(kindSnapshot)
	}
}

// snapshotStore is raft's file snapshot store, which records its writes
// in the disk health and removes what a failed snapshot left: raft leaves
// the temporary directory of a snapshot whose metadata or data could not
// be written (a full disk) and never removes it, so each failed attempt
// would keep what it managed to write, and a full disk would stay full.
type snapshotStore struct {
	*raft.FileSnapshotStore
	dir    string
	health *diskHealth
	logger hclog.Logger
	mu     sync.Mutex
	active map[string]bool // ids of the snapshots being written
}

// snapshotsRetained is how many snapshots the store keeps.
const snapshotsRetained = 2

func newSnapshotStore(base string, logger hclog.Logger, health *diskHealth) (*snapshotStore, error) {
	fs, err := raft.NewFileSnapshotStoreWithLogger(base, snapshotsRetained, logger)
	if err != nil {
		return nil, err
	}
	s := &snapshotStore{FileSnapshotStore: fs, dir: filepath.Join(base, "snapshots"), health: health, logger: logger, active: map[string]bool{}}
	s.sweep() // left by a process that died while writing one
	return s, nil
}

// Create starts a snapshot.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration,
	confIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, conf, confIndex, trans)
	if err != nil {
		s.health.wrote(kindSnapshot, err)
		s.sweep()
		return nil, diskErr("start a snapshot", err)
	}
	s.mu.Lock()
	s.active[sink.ID()] = true
	s.mu.Unlock()
	return &snapshotSink{SnapshotSink: sink, store: s}, nil
}

// done ends a snapshot: closed with err, or cancelled.
func (s *snapshotStore) done(id string, cancelled bool, err error) {
	s.mu.Lock()
	delete(s.active, id)
	s.mu.Unlock()
	if !cancelled {
		s.health.wrote(kindSnapshot, err)
	}
	if cancelled || err != nil {
		s.sweep()
	}
}

// sweep removes the temporary directories of snapshots not being written.
func (s *snapshotStore) sweep() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		id, tmp := strings.CutSuffix(e.Name(), ".tmp")
		if !tmp || !e.IsDir() || s.active[id] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			s.logger.Warn("could not remove what a failed snapshot left", "dir", e.Name(), "error", err)
		}
	}
}

// snapshotSink reports the end of its snapshot to the store.
type snapshotSink struct {
	raft.SnapshotSink
	store *snapshotStore
	err   error // the first failed write
}

func (k *snapshotSink) Write(p []byte) (int, error) {
	n, err := k.SnapshotSink.Write(p)
	if err != nil && k.err == nil {
		k.err = err
		k.store.health.wrote(kindSnapshot, err)
	}
	return n, err
}

func (k *snapshotSink) Close() error {
	err := k.SnapshotSink.Close()
	k.store.done(k.ID(), false, err)
	return err
}

func (k *snapshotSink) Cancel() error {
	err := k.SnapshotSink.Cancel()
	k.store.done(k.ID(), true, err)
	return err
}
