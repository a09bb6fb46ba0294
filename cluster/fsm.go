package cluster

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ratelog"
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
	// halt is told, once, why the machine stopped: an entry of an
	// unknown type, or a snapshot of a newer version.
	halt    func(error)
	halted  atomic.Bool
	skipLog ratelog.Limiter // skipped unknown types, per type
	skipped atomic.Uint64   // entries skipped as ignorable and unknown
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

// Apply applies a committed command. Its result is a state.Outcome.
func (f *fsm) Apply(l *raft.Log) any {
	out := f.m.Apply(l.Index, l.Data)
	switch {
	case isHalt(out):
		f.stop(f.m.Halted())
		return out // not seen: the state did not reach this index
	case errors.Is(out.Err(), state.ErrRejected):
		f.log.Error("skipped a log entry that cannot be applied (every replica skips it alike)",
			zap.Uint64("index", l.Index), zap.String("reason", out.ErrMsg))
	case out.Skipped:
		f.logSkip(l)
	}
	f.see(l.Index)
	return out
}

// logSkip warns of an ignorable command this version does not know: the
// versions that know it apply it, this one goes on without it.
func (f *fsm) logSkip(l *raft.Log) {
	f.skipped.Add(1)
	typ := fmt.Sprint(l.Data[0])
	ok, n := f.skipLog.Allow(typ)
	if !ok {
		return
	}
	f.log.Warn("skipped a command of a type this version does not know; it is marked ignorable, so older versions may skip it "+
		"(upgrade this node to apply such commands)", zap.String("type", typ), zap.Uint64("index", l.Index), zap.Int("repeated", n))
}

// stop tells the cluster, once, that the machine cannot go on.
func (f *fsm) stop(why error) {
	if f.halted.CompareAndSwap(false, true) && f.halt != nil {
		f.halt(why)
	}
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

// Snapshot only clones; Persist does the I/O while Apply goes on. A
// halted machine has no snapshot: raft would file it under an index the
// state never reached, and a restart would skip the entry it stopped at.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.m.Halted(); err != nil {
		return nil, fmt.Errorf("cluster: no snapshot of a state machine that stopped: %w", err)
	}
	return &fsmSnapshot{s: f.m.Snapshot()}, nil
}

// Restore replaces the state whole. A snapshot of a newer version stops
// the node as an unknown command type does (a leader of a newer version
// sent it, or an older binary started over a newer data directory),
// instead of failing the same restore again at every retry.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := state.Decode(rc)
	if errors.Is(err, state.ErrNewerVersion) {
		why := fmt.Errorf("a snapshot cannot be read: %w", err)
		f.m.Stop(why)
		f.stop(why)
	}
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
