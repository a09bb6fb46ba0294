package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Business errors an Apply can return. They travel to the writer in the
// Outcome, so they are codes, not Go errors.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("version conflict")
	ErrInvalid  = errors.New("invalid command")
	// ErrRejected means the entry could not be applied at all (it does not
	// decode, or its command type is unknown to this version): every
	// replica skipped it and recorded it in State.Rejected.
	ErrRejected = errors.New("entry rejected")
)

var errByCode = map[string]error{"not_found": ErrNotFound, "exists": ErrExists, "conflict": ErrConflict, "invalid": ErrInvalid,
	"rejected": ErrRejected, "unknown_type": ErrUnknownType}

// Outcome is the result of applying one command: a value for the writer or a
// business error. It is plain data so it can be remembered for idempotent
// retries and sent back over the network.
type Outcome struct {
	Index   uint64          `json:"index"`
	Value   json.RawMessage `json:"value,omitempty"`
	ErrCode string          `json:"err_code,omitempty"`
	ErrMsg  string          `json:"err_msg,omitempty"`
	// Skipped is set when the command's type is unknown to this version and
	// it was flagged ignorable.
	Skipped bool `json:"skipped,omitempty"`
	// Replayed is set when an idempotency key had been seen: nothing was
	// applied and this is the first application's outcome.
	Replayed bool `json:"replayed,omitempty"`
}

// Err returns the business error, wrapping its sentinel, or nil.
func (o Outcome) Err() error {
	if o.ErrCode == "" {
		return nil
	}
	if base, ok := errByCode[o.ErrCode]; ok {
		return fmt.Errorf("%w: %s", base, o.ErrMsg)
	}
	return errors.New(o.ErrMsg)
}

func fail(code, format string, args ...any) Outcome {
	return Outcome{ErrCode: code, ErrMsg: fmt.Sprintf(format, args...)}
}

func value(v any) Outcome {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("state: result not encodable: %v", err))
	}
	return Outcome{Value: b}
}

// Apply applies the log entry at index. A malformed entry panics with a
// string, an unknown command type that is not ignorable with an
// *UnknownTypeError; either leaves the state unchanged: the replicas must
// never diverge silently.
func (s *State) Apply(index uint64, entry []byte) Outcome {
	d, err := decode(entry)
	if err != nil {
		panic(fmt.Sprintf("state: log entry %d: %v", index, err))
	}
	if d.key != "" {
		if prev, ok := s.Idem[d.key]; ok {
			s.Index = index
			prev.Replayed = true
			prev.Value = cloneSlice(prev.Value)
			return prev
		}
	}
	// dispatch panics before it changes anything, so a panicking Apply
	// leaves the state as it was, Index included.
	out := s.dispatch(index, d)
	s.Index = index
	out.Index = index
	if out.ErrCode == "" && !out.Skipped && d.flags&FlagIgnorable == 0 && d.typ > s.CommandLevel {
		s.CommandLevel = d.typ
	}
	if d.audit != nil {
		s.appendAudit(index, *d.audit, outcomeCode(out))
	}
	if d.key != "" {
		s.remember(d.key, out)
	}
	return out
}

// ApplyOrReject is Apply for committed entries: an entry that Apply
// refuses as malformed is skipped instead, on every replica alike, so one
// bad entry in the log never stops a node or makes it crash at each
// restart. The skip is recorded (State.Rejected) and the outcome says
// rejected; the state is otherwise unchanged.
//
// An entry of a command type this version does not know and may not skip
// is not rejected: the versions that know it apply it, so skipping it
// here would make this replica differ. ApplyOrReject then changes nothing,
// index included, and returns the *UnknownTypeError: the caller must stop
// applying until this node is upgraded.
func (s *State) ApplyOrReject(index uint64, entry []byte) (out Outcome, err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if u, ok := r.(*UnknownTypeError); ok {
			out, err = Outcome{}, u
			return
		}
		out = s.reject(index, fmt.Sprint(r))
	}()
	return s.Apply(index, entry), nil
}

// MaxRejected bounds how many rejected entries the state remembers.
const MaxRejected = 16

// Rejection is an entry every replica skipped.
type Rejection struct {
	Index  uint64 `json:"index"`
	Reason string `json:"reason"`
}

func (s *State) reject(index uint64, reason string) Outcome {
	if len(reason) > 512 {
		reason = reason[:512]
	}
	s.Rejected = append(s.Rejected, Rejection{Index: index, Reason: reason})
	if n := len(s.Rejected); n > MaxRejected {
		s.Rejected = append([]Rejection(nil), s.Rejected[n-MaxRejected:]...)
	}
	s.RejectedTotal++
	s.Index = index
	return Outcome{Index: index, ErrCode: "rejected", ErrMsg: reason}
}

func (s *State) dispatch(index uint64, d decoded) Outcome {
	switch d.typ {
	case TypeNoop:
		return Outcome{}
	case TypeRegisterNode:
		return applyBody(index, d, s.registerNode)
	case TypeSetNodeStatus:
		return applyBody(index, d, s.setNodeStatus)
	case TypeRemoveNode:
		return applyBody(index, d, s.removeNode)
	case TypePutDeployment:
		return applyBody(index, d, s.putDeployment)
	case TypeDeleteDeployment:
		return applyBody(index, d, s.deleteDeployment)
	case TypeSetPlacements:
		return applyBody(index, d, s.setPlacements)
	case TypeReportPlacement:
		return applyBody(index, d, s.reportPlacement)
	case TypeRegisterModel:
		return applyBody(index, d, s.registerModel)
	case TypeUnregisterModel:
		return applyBody(index, d, s.unregisterModel)
	case TypeTouchDeployment:
		return applyBody(index, d, s.touchDeployment)
	case TypeSetDeploymentIdle:
		return applyBody(index, d, s.setDeploymentIdle)
	case TypeSetClusterCA:
		return applyBody(index, d, s.setClusterCA)
	case TypeSetNodeLabels:
		return applyBody(index, d, s.setNodeLabels)
	}
	if out, ok := s.dispatchKeys(index, d); ok {
		return out
	}
	if out, ok := s.dispatchUsage(index, d); ok {
		return out
	}
	if apply, ok := nextCommands[d.typ]; ok {
		return apply(s, index, d)
	}
	if d.flags&FlagIgnorable != 0 {
		return Outcome{Skipped: true}
	}
	panic(&UnknownTypeError{Index: index, Type: d.typ})
}

// applyBody decodes the body into B and applies it.
func applyBody[B any](index uint64, d decoded, fn func(uint64, *B) Outcome) Outcome {
	var b B
	if err := json.Unmarshal(d.body, &b); err != nil {
		panic(fmt.Sprintf("state: log entry %d (%v): %v", index, d.typ, err))
	}
	return fn(index, &b)
}

// remember keeps an outcome for its key. The value is copied, here and on
// replay, so a writer changing the bytes it got back cannot change the state.
func (s *State) remember(key string, out Outcome) {
	out.Value = cloneSlice(out.Value)
	s.Idem[key] = out
	s.IdemOrder = append(s.IdemOrder, key)
	for len(s.IdemOrder) > MaxIdempotencyKeys {
		delete(s.Idem, s.IdemOrder[0])
		s.IdemOrder = s.IdemOrder[1:]
	}
}

func (s *State) registerNode(index uint64, c *RegisterNode) Outcome {
	n := c.Node
	if err := checkName(n.ID); err != "" {
		return fail("invalid", "node id %q %s", n.ID, err)
	}
	if old, ok := s.Nodes[n.ID]; ok {
		n.Status, n.StatusReason, n.StatusSince, n.JoinedIndex = old.Status, old.StatusReason, old.StatusSince, old.JoinedIndex
	} else {
		n.Status, n.StatusSince, n.JoinedIndex = NodeReady, c.Time, index
	}
	s.Nodes[n.ID] = &n
	return value(n)
}

// checkName says what is wrong with a node id or deployment name, or "".
// A NUL byte would let two placements share a key (see placementKey).
func checkName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case strings.IndexByte(name, 0) >= 0:
		return "holds a NUL byte"
	}
	return ""
}

func (s *State) setClusterCA(_ uint64, c *SetClusterCA) Outcome {
	switch {
	case c.CA.Cert == "" || c.CA.Key == "":
		return fail("invalid", "the cluster CA needs a certificate and a key")
	case s.ClusterCA == nil:
		ca := c.CA
		s.ClusterCA = &ca
	case *s.ClusterCA != c.CA:
		return fail("conflict", "the cluster already has another CA")
	}
	return Outcome{}
}

func (s *State) setNodeLabels(_ uint64, c *SetNodeLabels) Outcome {
	n, ok := s.Nodes[c.ID]
	if !ok {
		return fail("not_found", "node %q is not a member", c.ID)
	}
	labels := make(map[string]string, len(c.Labels))
	for k, v := range c.Labels {
		if k == "" {
			return fail("invalid", "a label needs a key")
		}
		labels[k] = v
	}
	if len(labels) == 0 {
		labels = nil
	}
	n.Labels = labels
	return value(n)
}

func (s *State) setNodeStatus(_ uint64, c *SetNodeStatus) Outcome {
	n, ok := s.Nodes[c.ID]
	if !ok {
		return fail("not_found", "node %q is not a member", c.ID)
	}
	switch c.Status {
	case NodeReady, NodeDown, NodeCordoned, NodeDraining:
	default:
		return fail("invalid", "unknown node status %q", c.Status)
	}
	if n.Status != c.Status {
		n.Status, n.StatusSince = c.Status, c.Time
	}
	n.StatusReason = c.Reason
	return value(n)
}

func (s *State) removeNode(_ uint64, c *RemoveNode) Outcome {
	if _, ok := s.Nodes[c.ID]; !ok {
		return fail("not_found", "node %q is not a member", c.ID)
	}
	delete(s.Nodes, c.ID)
	s.dropPlacements(func(p *Placement) bool { return p.Node == c.ID })
	return Outcome{}
}

func (s *State) putDeployment(index uint64, c *PutDeployment) Outcome {
	d := c.Deployment
	if err := checkName(d.Name); err != "" {
		return fail("invalid", "deployment name %q %s", d.Name, err)
	}
	switch {
	case d.Model == "":
		return fail("invalid", "deployment %q has no model", d.Name)
	case d.Replicas < 0:
		return fail("invalid", "deployment %q: replicas must not be negative", d.Name)
	case d.IdleTimeout < 0:
		return fail("invalid", "deployment %q: idle timeout must not be negative", d.Name)
	}
	old, exists := s.Deployments[d.Name]
	switch {
	case exists && c.Create:
		return fail("exists", "deployment %q already exists", d.Name)
	case c.IfVersion != 0 && (!exists || old.Version != c.IfVersion):
		return fail("conflict", "deployment %q is not at version %d", d.Name, c.IfVersion)
	}
	// Idleness is the cluster's to decide, not the writer's: a write keeps
	// it and counts as a use.
	d.CreatedIndex, d.Version, d.Idle, d.LastUsed, d.UsedIndex = index, 1, false, c.Time, index
	if exists {
		d.CreatedIndex, d.Version = old.CreatedIndex, old.Version+1
		d.Idle, d.LastUsed = old.Idle, max(old.LastUsed, c.Time)
	}
	if d.IdleTimeout == 0 {
		d.Idle = false
	}
	d.ModifiedIndex = index
	s.Deployments[d.Name] = &d
	return value(d)
}

func (s *State) deleteDeployment(_ uint64, c *DeleteDeployment) Outcome {
	if _, ok := s.Deployments[c.Name]; !ok {
		return fail("not_found", "deployment %q does not exist", c.Name)
	}
	delete(s.Deployments, c.Name)
	s.dropPlacements(func(p *Placement) bool { return p.Deployment == c.Name })
	return Outcome{}
}

// dropPlacements removes the placements for which drop holds.
func (s *State) dropPlacements(drop func(*Placement) bool) {
	for k, p := range s.Placements {
		if drop(p) {
			delete(s.Placements, k)
		}
	}
}

func (s *State) setPlacements(index uint64, c *SetPlacements) Outcome {
	// Check in sorted order, so that with several bad names every replica
	// reports the same one: the outcome may be remembered in the state.
	names := make([]string, 0, len(c.Deployments))
	for name := range c.Deployments {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := s.Deployments[name]; !ok {
			return fail("not_found", "deployment %q does not exist", name)
		}
		for _, node := range c.Deployments[name] {
			if _, ok := s.Nodes[node]; !ok {
				return fail("not_found", "node %q is not a member", node)
			}
		}
	}
	for _, name := range names {
		want := map[string]bool{}
		for _, node := range c.Deployments[name] {
			want[node] = true
		}
		s.dropPlacements(func(p *Placement) bool { return p.Deployment == name && !want[p.Node] })
		for node := range want {
			k := placementKey(name, node)
			if _, ok := s.Placements[k]; !ok {
				s.Placements[k] = &Placement{Deployment: name, Node: node, State: PlacementPending, ModifiedIndex: index}
			}
		}
	}
	return Outcome{}
}

func (s *State) reportPlacement(index uint64, c *ReportPlacement) Outcome {
	p, ok := s.Placements[placementKey(c.Deployment, c.Node)]
	if !ok {
		return fail("not_found", "no placement of %q on node %q", c.Deployment, c.Node)
	}
	switch c.State {
	case PlacementPending, PlacementPulling, PlacementLoading, PlacementReady, PlacementFailed:
	default:
		return fail("invalid", "unknown placement state %q", c.State)
	}
	p.State, p.Reason, p.Progress, p.ModifiedIndex = c.State, c.Reason, c.Progress, index
	p.BytesDone, p.BytesTotal = c.BytesDone, c.BytesTotal
	return value(*p)
}

func (s *State) touchDeployment(index uint64, c *TouchDeployment) Outcome {
	d, ok := s.Deployments[c.Name]
	if !ok {
		return fail("not_found", "deployment %q does not exist", c.Name)
	}
	d.LastUsed, d.UsedIndex = max(d.LastUsed, c.Time), index
	return Outcome{}
}

func (s *State) setDeploymentIdle(index uint64, c *SetDeploymentIdle) Outcome {
	d, ok := s.Deployments[c.Name]
	if !ok {
		return fail("not_found", "deployment %q does not exist", c.Name)
	}
	if !c.Idle {
		d.Idle, d.LastUsed, d.UsedIndex = false, max(d.LastUsed, c.Time), index
		return value(*d)
	}
	switch {
	case d.IdleTimeout == 0:
		return fail("conflict", "deployment %q has no idle timeout", c.Name)
	case d.LastUsed > c.UnusedSince:
		return fail("conflict", "deployment %q was used after %d", c.Name, c.UnusedSince)
	case c.UnusedSinceIndex != 0 && d.UsedIndex > c.UnusedSinceIndex:
		return fail("conflict", "deployment %q was used after index %d", c.Name, c.UnusedSinceIndex)
	}
	d.Idle = true
	return value(*d)
}
