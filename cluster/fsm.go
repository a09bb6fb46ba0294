package cluster

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// fsm adapts state.Machine to raft.FSM. It adds nothing but the raft index
// of the last entry it saw, which linearizable reads compare with the
// commit index.
type fsm struct {
	m    *state.Machine
	log  *zap.Logger
	seen atomic.Uint64 // raft index of the last command or configuration applied
	// restores counts snapshot restores (tests check catch-up by snapshot).
	restores atomic.Uint64
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

// Apply applies a committed command. Its result is a state.Outcome.
func (f *fsm) Apply(l *raft.Log) any {
	out := f.m.Apply(l.Index, l.Data)
	if errors.Is(out.Err(), state.ErrRejected) {
		f.log.Error("skipped a log entry that cannot be applied (every replica skips it alike)",
			zap.Uint64("index", l.Index), zap.String("reason", out.ErrMsg))
	}
	f.see(l.Index)
	return out
}

// StoreConfiguration only records the index: membership lives in raft.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) { f.see(index) }

func (f *fsm) see(index uint64) {
	for {
		old := f.seen.Load()
		if index <= old || f.seen.CompareAndSwap(old, index) {
			return
		}
	}
}

// Snapshot only clones; Persist does the I/O while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{s: f.m.Snapshot()}, nil
}

// Restore replaces the state whole.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := state.Decode(rc)
	if err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	// Counted before the state changes, so that whoever sees the restored
	// state also sees the count.
	f.restores.Add(1)
	f.m.Restore(s)
	return nil
}

type fsmSnapshot struct{ s *state.State }

// Persist writes the cloned state to the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.s.Encode(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release has nothing to free: the clone is garbage collected.
func (s *fsmSnapshot) Release() {}
