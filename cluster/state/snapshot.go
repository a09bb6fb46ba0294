package state

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
)

// snapshotVersion is the format of the snapshots this version writes and
// the newest it reads. Raise it when a change of the encoding would make
// an older version misread a snapshot (a field renamed, or its meaning
// changed); a field an older version may ignore needs no new format. A
// state that holds commands an older version does not know is caught by
// State.CommandLevel instead.
const snapshotVersion = 1

type snapshotFile struct {
	Version int    `json:"version"`
	State   *State `json:"state"`
}

// snapshotHead is a snapshot with its state left undecoded, so that the
// format version is checked before the rest is read.
type snapshotHead struct {
	Version int             `json:"version"`
	State   json.RawMessage `json:"state"`
}

// Clone returns a deep copy, so a snapshot can be written while Apply goes
// on. It copies by hand rather than through JSON because the machine holds
// its read lock, and so holds up Apply, while it runs; a new field of a
// reference type must be copied here too (the tests fill every field to
// catch one that is not).
func (s *State) Clone() *State {
	c := &State{
		Index:        s.Index,
		Nodes:        make(map[string]*Node, len(s.Nodes)),
		Deployments:  make(map[string]*Deployment, len(s.Deployments)),
		Placements:   make(map[string]*Placement, len(s.Placements)),
		APIKeys:      make(map[string]*APIKey, len(s.APIKeys)),
		Quotas:       cloneMap(s.Quotas),
		Usage:        cloneMap(s.Usage),
		UsageBatches: maps.Clone(s.UsageBatches),
		Audit:        cloneSlice(s.Audit),
		Models:       cloneMap(s.Models),
		Idem:         make(map[string]Outcome, len(s.Idem)),
		IdemOrder:    cloneSlice(s.IdemOrder),
		Rejected:     cloneSlice(s.Rejected),

		RejectedTotal: s.RejectedTotal,
		CommandLevel:  s.CommandLevel,
		AuditAnchor:   s.AuditAnchor,
		KeysIndex:     s.KeysIndex,
	}
	c.Energy, c.EnergyBatches = cloneMap(s.Energy), maps.Clone(s.EnergyBatches)
	if s.APIKeys == nil {
		c.APIKeys = nil
	}
	for k, v := range s.APIKeys {
		if v == nil {
			c.APIKeys[k] = nil
			continue
		}
		c.APIKeys[k] = v.Clone()
	}
	if s.ClusterCA != nil {
		ca := *s.ClusterCA
		c.ClusterCA = &ca
	}
	for k, n := range s.Nodes {
		if n == nil {
			c.Nodes[k] = nil
			continue
		}
		m := *n
		m.Labels = maps.Clone(n.Labels)
		m.DeclaredLabels = maps.Clone(n.DeclaredLabels)
		m.GPUs = cloneSlice(n.GPUs)
		m.Models = cloneSlice(n.Models)
		c.Nodes[k] = &m
	}
	for k, d := range s.Deployments {
		if d == nil {
			c.Deployments[k] = nil
			continue
		}
		e := *d
		e.Constraints = cloneSlice(d.Constraints)
		c.Deployments[k] = &e
	}
	for k, p := range s.Placements {
		if p == nil {
			c.Placements[k] = nil
			continue
		}
		q := *p
		c.Placements[k] = &q
	}
	for k, o := range s.Idem {
		o.Value = cloneSlice(o.Value)
		c.Idem[k] = o
	}
	c.fill()
	return c
}

// cloneMap copies a map of pointers to structs without references.
func cloneMap[V any](m map[string]*V) map[string]*V {
	if m == nil {
		return nil
	}
	out := make(map[string]*V, len(m))
	for k, v := range m {
		if v == nil {
			out[k] = nil
			continue
		}
		w := *v
		out[k] = &w
	}
	return out
}

// cloneSlice copies a slice of values without references, keeping nil nil
// and empty empty so the copy encodes the same.
func cloneSlice[S ~[]E, E any](s S) S {
	if s == nil {
		return nil
	}
	return append(make(S, 0, len(s)), s...)
}

// Encode writes the state as a snapshot.
func (s *State) Encode(w io.Writer) error {
	return json.NewEncoder(w).Encode(snapshotFile{Version: snapshotVersion, State: s})
}

// Decode reads a snapshot written by Encode, by this version or an older
// one. A snapshot of a newer format, or holding commands this version does
// not know, is refused with ErrNewerVersion rather than misread; a damaged
// one with ErrCorrupt.
func Decode(r io.Reader) (*State, error) {
	var h snapshotHead
	if err := json.NewDecoder(r).Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	switch {
	case h.Version > snapshotVersion:
		return nil, fmt.Errorf("%w: the snapshot has format version %d, and this version of sovra reads formats up to %d; "+
			"restore it with the version that wrote it or a later one", ErrNewerVersion, h.Version, snapshotVersion)
	case h.Version < 1:
		return nil, fmt.Errorf("%w: snapshot version %d", ErrCorrupt, h.Version)
	}
	var s *State
	if err := json.Unmarshal(h.State, &s); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	if s == nil {
		return nil, fmt.Errorf("%w: snapshot has no state", ErrCorrupt)
	}
	if s.CommandLevel > Level() {
		return nil, fmt.Errorf("%w: the snapshot holds commands up to type %d, and this version of sovra knows types up to %d; "+
			"restore it with a version that knows them", ErrNewerVersion, byte(s.CommandLevel), byte(Level()))
	}
	s.fill()
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	return s, nil
}

// check reports a broken rule that Apply keeps, so that a damaged snapshot
// is refused at restore instead of failing some later command.
func (s *State) check() error {
	for k, n := range s.Nodes {
		switch {
		case n == nil:
			return fmt.Errorf("node %q is null", k)
		case n.ID != k:
			return fmt.Errorf("node %q is filed under %q", n.ID, k)
		}
		if err := checkName(n.ID); err != "" {
			return fmt.Errorf("node id %q %s", n.ID, err)
		}
	}
	for k, d := range s.Deployments {
		switch {
		case d == nil:
			return fmt.Errorf("deployment %q is null", k)
		case d.Name != k:
			return fmt.Errorf("deployment %q is filed under %q", d.Name, k)
		}
		if err := checkName(d.Name); err != "" {
			return fmt.Errorf("deployment name %q %s", d.Name, err)
		}
		if d.IdleTimeout < 0 {
			return fmt.Errorf("deployment %q has a negative idle timeout", d.Name)
		}
	}
	for k, p := range s.Placements {
		switch {
		case p == nil:
			return fmt.Errorf("placement %q is null", k)
		case k != placementKey(p.Deployment, p.Node):
			return fmt.Errorf("placement of %q on %q is filed under %q", p.Deployment, p.Node, k)
		case s.Deployments[p.Deployment] == nil:
			return fmt.Errorf("placement on %q of missing deployment %q", p.Node, p.Deployment)
		case s.Nodes[p.Node] == nil:
			return fmt.Errorf("placement of %q on missing node %q", p.Deployment, p.Node)
		}
	}
	for k, v := range s.APIKeys {
		switch {
		case v == nil:
			return fmt.Errorf("api key %q is null", k)
		case v.ID != k:
			return fmt.Errorf("api key %q is filed under %q", v.ID, k)
		}
		if e := checkKey(v); e != "" {
			return fmt.Errorf("api key %q %s", k, e)
		}
	}
	for k, v := range s.Quotas {
		if v == nil {
			return fmt.Errorf("quota %q is null", k)
		}
	}
	for k, v := range s.Usage {
		if v == nil {
			return fmt.Errorf("usage %q is null", k)
		}
	}
	for k, v := range s.Energy {
		if v == nil {
			return fmt.Errorf("energy %q is null", k)
		}
	}
	for k, m := range s.Models {
		if m == nil {
			return fmt.Errorf("model %q is null", k)
		}
		if err := checkModelSpec(k, m); err != nil {
			return fmt.Errorf("registered model: %v", err)
		}
	}
	if len(s.IdemOrder) != len(s.Idem) {
		return fmt.Errorf("%d idempotency keys in order, %d remembered", len(s.IdemOrder), len(s.Idem))
	}
	seen := make(map[string]bool, len(s.IdemOrder))
	for _, k := range s.IdemOrder {
		if _, ok := s.Idem[k]; !ok || seen[k] {
			return fmt.Errorf("idempotency key %q is listed twice or not remembered", k)
		}
		seen[k] = true
	}
	return nil
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
	if s.Models == nil {
		s.Models = map[string]*ModelSpec{}
	}
	if s.Idem == nil {
		s.Idem = map[string]Outcome{}
	}
}
