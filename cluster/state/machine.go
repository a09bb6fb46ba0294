package state

import (
	"math"
	"sync"
)

// Machine guards a State for one writer (the raft FSM) and many readers.
type Machine struct {
	mu sync.RWMutex
	s  *State
	// applied is closed and replaced after each Apply, so readers can wait
	// for an index.
	applied chan struct{}
	// halt is why the machine stopped (see Halted); a restored state at
	// or past haltAt lets it go on.
	halt   error
	haltAt uint64 // MaxUint64 after Stop: any restored state will do
}

// NewMachine returns a machine over an empty state.
func NewMachine() *Machine {
	return &Machine{s: New(), applied: make(chan struct{})}
}

// Apply applies one committed log entry. An entry that cannot be applied
// is skipped and recorded (see State.ApplyOrReject). An entry of a
// command type this version does not know and may not skip halts the
// machine: from then on Apply changes nothing and answers ErrUnknownType
// (see Halted), so the state stays a true prefix of the cluster's.
func (m *Machine) Apply(index uint64, entry []byte) Outcome {
	out, ch := m.apply(index, entry)
	if ch != nil {
		close(ch)
	}
	return out
}

func (m *Machine) apply(index uint64, entry []byte) (Outcome, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.halt != nil {
		return halted(index, m.halt), nil
	}
	out, err := m.s.ApplyOrReject(index, entry)
	if err != nil {
		m.halt, m.haltAt = err, index
		return halted(index, m.halt), nil
	}
	ch := m.applied
	m.applied = make(chan struct{})
	return out, ch
}

// halted is the outcome of an entry a halted machine did not apply.
func halted(index uint64, why error) Outcome {
	return Outcome{Index: index, ErrCode: "unknown_type", ErrMsg: "not applied: " + why.Error()}
}

// Halted returns why the machine stopped (the *UnknownTypeError of the
// entry it stopped at, or what Stop was given), or nil while it applies.
func (m *Machine) Halted() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.halt
}

// Stop halts the machine for a reason of its owner's (a snapshot this
// version cannot read): Apply changes nothing from then on, until a
// state is restored.
func (m *Machine) Stop(why error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.halt == nil {
		m.halt, m.haltAt = why, math.MaxUint64
	}
}

// Read calls fn with the state under a read lock; fn must not keep it.
func (m *Machine) Read(fn func(*State)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.s)
}

// Index is the index of the last applied entry.
func (m *Machine) Index() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Index
}

// Changed returns a channel closed at the next Apply.
func (m *Machine) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.applied
}

// Snapshot returns a deep copy of the state.
func (m *Machine) Snapshot() *State {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Clone()
}

// Restore replaces the state whole. A halted machine goes on only when
// the new state is past the entry that stopped it.
func (m *Machine) Restore(s *State) {
	m.mu.Lock()
	m.s = s
	if m.halt != nil && (m.haltAt == math.MaxUint64 || s.Index >= m.haltAt) {
		m.halt = nil
	}
	ch := m.applied
	m.applied = make(chan struct{})
	m.mu.Unlock()
	close(ch)
}
