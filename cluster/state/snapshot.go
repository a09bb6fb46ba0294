package state

import (
	"encoding/json"
	"fmt"
	"io"
)

// snapshotVersion is written at the head of every snapshot.
const snapshotVersion = 1

type snapshotFile struct {
	Version int    `json:"version"`
	State   *State `json:"state"`
}

// Clone returns a deep copy, so a snapshot can be written while Apply goes
// on.
func (s *State) Clone() *State {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("state: clone: %v", err))
	}
	c := New()
	if err := json.Unmarshal(b, c); err != nil {
		panic(fmt.Sprintf("state: clone: %v", err))
	}
	c.fill()
	return c
}

// Encode writes the state as a snapshot.
func (s *State) Encode(w io.Writer) error {
	return json.NewEncoder(w).Encode(snapshotFile{Version: snapshotVersion, State: s})
}

// Decode reads a snapshot written by Encode.
func Decode(r io.Reader) (*State, error) {
	var f snapshotFile
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	if f.Version != snapshotVersion || f.State == nil {
		return nil, fmt.Errorf("%w: snapshot version %d", ErrCorrupt, f.Version)
	}
	f.State.fill()
	return f.State, nil
}

// fill replaces nil maps, which JSON leaves for empty ones.
func (s *State) fill() {
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.Deployments == nil {
		s.Deployments = map[string]*Deployment{}
	}
	if s.Placements == nil {
		s.Placements = map[string]*Placement{}
	}
	if s.APIKeys == nil {
		s.APIKeys = map[string]*APIKey{}
	}
	if s.Quotas == nil {
		s.Quotas = map[string]*Quota{}
	}
	if s.Usage == nil {
		s.Usage = map[string]*UsageTotal{}
	}
	if s.Idem == nil {
		s.Idem = map[string]Outcome{}
	}
}
