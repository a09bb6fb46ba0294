package state

import "sync"

// Machine guards a State for one writer (the raft FSM) and many readers.
type Machine struct {
	mu sync.RWMutex
	s  *State
	// applied is closed and replaced after each Apply, so readers can wait
	// for an index.
	applied chan struct{}
}

// NewMachine returns a machine over an empty state.
func NewMachine() *Machine {
	return &Machine{s: New(), applied: make(chan struct{})}
}

// Apply applies one committed log entry. An entry that cannot be applied
// is skipped and recorded (see State.ApplyOrReject).
func (m *Machine) Apply(index uint64, entry []byte) Outcome {
	out, ch := m.apply(index, entry)
	close(ch)
	return out
}

func (m *Machine) apply(index uint64, entry []byte) (Outcome, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.s.ApplyOrReject(index, entry)
	ch := m.applied
	m.applied = make(chan struct{})
	return out, ch
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

// Restore replaces the state whole.
func (m *Machine) Restore(s *State) {
	m.mu.Lock()
	m.s = s
	ch := m.applied
	m.applied = make(chan struct{})
	m.mu.Unlock()
	close(ch)
}
