package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fuzzBase is the state every fuzzed entry is applied to: a few nodes,
// deployments, placements and remembered keys.
func fuzzBase(t testing.TB) *State {
	a := newApplier(t)
	a.node("n1")
	a.node("n2")
	a.node("n3")
	a.deployment("d1")
	a.deployment("d2")
	a.place("d1", "n1", "n2")
	a.place("d2", "n3")
	a.raw(entryKeyed(t, TypeReportPlacement, 0, "k1", ReportPlacement{Deployment: "d1", Node: "n1", State: PlacementReady}))
	a.raw(entryKeyed(t, TypeRemoveNode, 0, "k2", RemoveNode{ID: "n9"}))
	a.ok(TypeRegisterModel, RegisterModel{Model: tinySpec("m1")})
	a.ok(TypePutAPIKey, PutAPIKey{Key: APIKey{ID: "key-1", Role: RoleInference, Hash: "h1", Created: 3}})
	a.raw(entryAudited(t, TypeRemoveNode, RemoveNode{ID: "n9"}, AuditRecord{Actor: "admin", Action: "remove-node"}))
	return a.s
}

// applyRecover applies an entry and returns the panic, if any.
func applyRecover(s *State, index uint64, e []byte) (out Outcome, msg any, panicked bool) {
	msg, panicked = panicMessage(func() { out = s.Apply(index, e) })
	return out, msg, panicked
}

// checkApplied checks what must hold after an entry applied: the index,
// the invariants, a snapshot round trip, and the same result on a second
// replica.
func checkApplied(t *testing.T, base, s *State, index uint64, e []byte, out Outcome) {
	t.Helper()
	if out.Index != index && !out.Replayed {
		t.Fatalf("outcome index %d, want %d", out.Index, index)
	}
	if s.Index != index {
		t.Fatalf("state index %d, want %d", s.Index, index)
	}
	if err := checkInvariants(s); err != nil {
		t.Fatalf("entry %q broke the state: %v", e, err)
	}
	if b := VerifyAudit(s.AuditAnchor, s.Audit); b != nil {
		t.Fatalf("entry %q broke the audit chain at %d: %s", e, b.Seq, b.Reason)
	}
	snap := snapshot(t, s)
	back, err := Decode(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("entry %q: snapshot refused: %v\n%s", e, err, snap)
	}
	if again := snapshot(t, back); !bytes.Equal(again, snap) {
		t.Fatalf("entry %q: snapshot does not round-trip:\n%s\n%s", e, snap, again)
	}
	other := base.Clone()
	out2, msg, panicked := applyRecover(other, index, e)
	if panicked {
		t.Fatalf("entry %q applied once and panicked on a second replica: %v", e, msg)
	}
	if !reflect.DeepEqual(out, out2) {
		t.Fatalf("entry %q: outcomes differ between replicas: %+v, %+v", e, out, out2)
	}
	if got := snapshot(t, other); !bytes.Equal(got, snap) {
		t.Fatalf("entry %q: replicas differ:\n%s\n%s", e, snap, got)
	}
}

// bodyTypes maps each known command type to a new value of its body.
var bodyTypes = map[Type]func() any{
	TypeRegisterNode:      func() any { return new(RegisterNode) },
	TypeSetNodeStatus:     func() any { return new(SetNodeStatus) },
	TypeRemoveNode:        func() any { return new(RemoveNode) },
	TypePutDeployment:     func() any { return new(PutDeployment) },
	TypeDeleteDeployment:  func() any { return new(DeleteDeployment) },
	TypeSetPlacements:     func() any { return new(SetPlacements) },
	TypeReportPlacement:   func() any { return new(ReportPlacement) },
	TypeRegisterModel:     func() any { return new(RegisterModel) },
	TypeUnregisterModel:   func() any { return new(UnregisterModel) },
	TypeTouchDeployment:   func() any { return new(TouchDeployment) },
	TypeSetDeploymentIdle: func() any { return new(SetDeploymentIdle) },
	TypeSetClusterCA:      func() any { return new(SetClusterCA) },
	TypeSetNodeLabels:     func() any { return new(SetNodeLabels) },
	TypePutAPIKey:         func() any { return new(PutAPIKey) },
	TypeUpdateAPIKey:      func() any { return new(UpdateAPIKey) },
	TypeRotateAPIKey:      func() any { return new(RotateAPIKey) },
	TypeDeleteAPIKey:      func() any { return new(DeleteAPIKey) },
	TypeTouchAPIKeys:      func() any { return new(TouchAPIKeys) },
	TypeAppendAudit:       func() any { return new(AppendAudit) },
	TypeTrimAudit:         func() any { return new(TrimAudit) },
}

func FuzzApply(f *testing.F) {
	seeds := []struct {
		typ  Type
		body any
	}{
		{TypeNoop, nil},
		{TypeRegisterNode, RegisterNode{Node: Node{ID: "n4", HTTPAddr: "h:1", Labels: map[string]string{"a": "b"}, GPUs: []GPU{{Index: 0, Model: "NVIDIA H800", MemoryBytes: 1 << 30}}}, Time: 5}},
		{TypeRegisterNode, RegisterNode{Node: Node{ID: "n1", Version: "v2"}}},
		{TypeSetNodeStatus, SetNodeStatus{ID: "n2", Status: NodeDraining, Reason: "upgrade", Time: 9}},
		{TypeSetNodeStatus, SetNodeStatus{ID: "n2", Status: "bogus"}},
		{TypeRemoveNode, RemoveNode{ID: "n1"}},
		{TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d3", Model: "m", Replicas: 2, Constraints: []string{"a=b"}}, Create: true}},
		{TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d4", Model: "m", Replicas: 1, IdleTimeout: 60}, Time: 10}},
		{TypeTouchDeployment, TouchDeployment{Name: "d1", Time: 20}},
		{TypeSetDeploymentIdle, SetDeploymentIdle{Name: "d1", Idle: true, Time: 30, UnusedSince: 20}},
		{TypeSetDeploymentIdle, SetDeploymentIdle{Name: "d1", Time: 40}},
		{TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m"}, IfVersion: 1}},
		{TypeDeleteDeployment, DeleteDeployment{Name: "d1"}},
		{TypeSetPlacements, SetPlacements{Deployments: map[string][]string{"d1": {"n3", "n1"}, "d2": nil}}},
		{TypeSetPlacements, SetPlacements{Deployments: map[string][]string{"d1": {"n9"}, "d9": {"n1"}}}},
		{TypeReportPlacement, ReportPlacement{Deployment: "d1", Node: "n2", State: PlacementPulling, Progress: 0.3}},
		{TypeRegisterModel, RegisterModel{Model: tinySpec("Acme/Tiny"), Create: true}},
		{TypeRegisterModel, RegisterModel{Model: ModelSpec{Name: "bad", Architecture: "llama"}}},
		{TypeUnregisterModel, UnregisterModel{Name: "m1"}},
		{Type(10), map[string]any{"x": 1}},
		{TypePutAPIKey, PutAPIKey{Key: APIKey{ID: "key-2", Role: RoleAdmin, Hash: "h2", Models: []string{"d*"}, Labels: map[string]string{"team": "a"}}}},
		{TypeUpdateAPIKey, UpdateAPIKey{ID: "key-1", Models: &[]string{"["}}},
		{TypeRotateAPIKey, RotateAPIKey{ID: "key-1", Hash: "h9", GraceUntil: 50, Time: 10}},
		{TypeDeleteAPIKey, DeleteAPIKey{ID: "key-1"}},
		{TypeTouchAPIKeys, TouchAPIKeys{Times: map[string]int64{"key-1": 5, "nope": 6}}},
		{TypeAppendAudit, AppendAudit{Records: []AuditRecord{{Actor: "a", Action: "auth-failed", Outcome: "denied"}}}},
		{TypeTrimAudit, TrimAudit{Before: 2}},
	}
	for i, sd := range seeds {
		e := entryKeyed(f, sd.typ, Flags(i%2), []string{"", "k1", "k9"}[i%3], sd.body)
		body, err := json.Marshal(sd.body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e[0], e[1], e[2:], body)
	}
	f.Add(byte(1), byte(0), []byte(`{"b":{"node":"x"}}`), []byte(`{"node":{"id":"a\u0000b"}}`))
	f.Add(byte(6), byte(0), []byte(`{"b":{"deployments":{"d1":"n1"}}}`), []byte(`{"deployments":{"":[""]}}`))
	f.Add(byte(200), byte(1), []byte(`{"k":"k1"}`), []byte(`null`))
	f.Add(byte(3), byte(0), []byte(``), []byte(``))
	f.Add(byte(4), byte(0), []byte(`{"b":{"deployment":{"name":"d","model":"m","replicas":1e3}}}`), []byte(`{"deployment":{"name":"d1","model":"m","replicas":-1}}`))

	base := fuzzBase(f)
	const index = 1000
	f.Fuzz(func(t *testing.T, typ, flags byte, env, body []byte) {
		// Any bytes: the entry applies, or panics with a "state:" message
		// (or an unknown type's error) and changes nothing.
		e := append([]byte{typ, flags}, env...)
		s := base.Clone()
		before := snapshot(t, s)
		out, msg, panicked := applyRecover(s, index, e)
		if panicked {
			m, ok := msg.(string)
			if u, unknown := msg.(*UnknownTypeError); unknown && u.Index == index && u.Type == Type(typ) {
				m, ok = "state: "+u.Error(), true
			}
			if !ok || !strings.HasPrefix(m, "state: ") {
				t.Fatalf("entry %q: panic %#v is not a state: message", e, msg)
			}
			if after := snapshot(t, s); !bytes.Equal(after, before) {
				t.Fatalf("entry %q panicked and changed the state", e)
			}
		} else {
			checkApplied(t, base, s, index, e, out)
		}

		// A body that decodes as a known command, encoded properly, must
		// apply without a panic and keep the state whole.
		ct := Type(typ % 21)
		mk, ok := bodyTypes[ct]
		if !ok {
			return
		}
		v := mk()
		if json.Unmarshal(body, v) != nil {
			return
		}
		key := ""
		if flags&2 != 0 {
			key = "k1"
		}
		e2, err := Encode(Command{Type: ct, Key: key, Body: v})
		if err != nil {
			t.Fatalf("encode %v %s: %v", ct, body, err)
		}
		s2 := base.Clone()
		out2, msg, panicked := applyRecover(s2, index, e2)
		if panicked {
			t.Fatalf("valid entry %q panicked: %v", e2, msg)
		}
		checkApplied(t, base, s2, index, e2, out2)
		if out2.ErrCode == "" && !out2.Replayed {
			if err := postcondition(s2, v); err != nil {
				t.Fatalf("entry %q: %v", e2, err)
			}
		}
	})
}

// postcondition checks that a command that succeeded did what it says.
func postcondition(s *State, cmd any) error {
	switch c := cmd.(type) {
	case *RegisterNode:
		if n := s.Nodes[c.Node.ID]; n == nil || n.HTTPAddr != c.Node.HTTPAddr {
			return fmt.Errorf("registered node %q is %+v", c.Node.ID, n)
		}
	case *SetNodeStatus:
		if n := s.Nodes[c.ID]; n == nil || n.Status != c.Status || n.StatusReason != c.Reason {
			return fmt.Errorf("node %q is %+v after set status", c.ID, n)
		}
	case *RemoveNode:
		if s.Nodes[c.ID] != nil {
			return fmt.Errorf("removed node %q is still there", c.ID)
		}
	case *PutDeployment:
		if d := s.Deployments[c.Deployment.Name]; d == nil || d.Model != c.Deployment.Model || d.ModifiedIndex != s.Index {
			return fmt.Errorf("put deployment %q is %+v", c.Deployment.Name, d)
		}
	case *DeleteDeployment:
		if s.Deployments[c.Name] != nil || len(s.PlacementsOf(c.Name)) != 0 {
			return fmt.Errorf("deleted deployment %q is still there", c.Name)
		}
	case *SetPlacements:
		for name, nodes := range c.Deployments {
			want := map[string]bool{}
			for _, n := range nodes {
				want[n] = true
				if p := s.Placement(name, n); p == nil || p.Deployment != name || p.Node != n {
					return fmt.Errorf("placement of %q on %q is %+v", name, n, p)
				}
			}
			if got := s.PlacementsOf(name); len(got) != len(want) {
				return fmt.Errorf("%q has %d placements, want %d", name, len(got), len(want))
			}
		}
	case *ReportPlacement:
		if p := s.Placement(c.Deployment, c.Node); p == nil || p.State != c.State || p.Deployment != c.Deployment || p.Node != c.Node {
			return fmt.Errorf("reported placement of %q on %q is %+v", c.Deployment, c.Node, p)
		}
	case *RegisterModel:
		if m := s.RegisteredModel(c.Model.Name); m == nil || m.Parameters != c.Model.Parameters || m.ModifiedIndex != s.Index {
			return fmt.Errorf("registered model %q is %+v", c.Model.Name, m)
		}
	case *UnregisterModel:
		if m := s.RegisteredModel(c.Name); m != nil {
			return fmt.Errorf("unregistered model %q is still there", c.Name)
		}
	case *PutAPIKey:
		if k := s.APIKeys[c.Key.ID]; k == nil || k.Hash != c.Key.Hash || s.KeysIndex != s.Index {
			return fmt.Errorf("put key %q is %+v", c.Key.ID, k)
		}
	case *RotateAPIKey:
		if k := s.APIKeys[c.ID]; k == nil || k.Hash != c.Hash {
			return fmt.Errorf("rotated key %q is %+v", c.ID, k)
		}
	case *DeleteAPIKey:
		if s.APIKeys[c.ID] != nil {
			return fmt.Errorf("deleted key %q is still there", c.ID)
		}
	}
	return nil
}

func FuzzDecodeSnapshot(f *testing.F) {
	for _, s := range []*State{New(), fuzzBase(f), filledState()} {
		var buf bytes.Buffer
		if err := s.Encode(&buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
		f.Add(bytes.Replace(buf.Bytes(), []byte(`"version":1`), []byte(`"version":2`), 1))
		f.Add(buf.Bytes()[:buf.Len()/2])
	}
	f.Add([]byte(`{"version":1,"state":{"nodes":{"n1":null}}}`))
	f.Add([]byte(`{"version":1,"state":{"idem":{"k":{"value":null}},"idem_order":["k"]}}`))
	f.Add([]byte(`{"version":1,"state":{"NODES":{"a":{"ID":"a"}},"nodes":{"b":{"id":"b"}}}}`))
	f.Add([]byte(`{"version":1,"state":{}} trailing`))

	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerVersion) {
				t.Fatalf("Decode error %v is neither ErrCorrupt nor ErrNewerVersion", err)
			}
			if s != nil {
				t.Fatal("Decode returned a state with its error")
			}
			return
		}
		if err := checkInvariants(s); err != nil {
			t.Fatalf("Decode accepted a broken state: %v", err)
		}
		first := snapshot(t, s)
		back, err := Decode(bytes.NewReader(first))
		if err != nil {
			t.Fatalf("Decode refused its own encoding: %v\n%s", err, first)
		}
		if second := snapshot(t, back); !bytes.Equal(first, second) {
			t.Fatalf("snapshot does not round-trip:\n%s\n%s", first, second)
		}
		if c := snapshot(t, s.Clone()); !bytes.Equal(c, first) {
			t.Fatalf("clone encodes differently:\n%s\n%s", first, c)
		}

		// Commands naming what is in the state apply without a panic.
		a := &applier{t: t, s: s, next: s.Index + 1}
		var nodes []string
		for _, n := range s.NodeList() {
			nodes = append(nodes, n.ID)
		}
		for _, d := range s.DeploymentList() {
			a.do(TypeSetPlacements, SetPlacements{Deployments: map[string][]string{d.Name: nodes}})
			for _, p := range s.PlacementsOf(d.Name) {
				a.do(TypeReportPlacement, ReportPlacement{Deployment: p.Deployment, Node: p.Node, State: PlacementReady})
			}
			a.do(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: d.Name, Model: "m"}, IfVersion: d.Version})
		}
		for _, k := range s.IdemOrder {
			a.raw(entryKeyed(t, TypeNoop, 0, k, nil))
		}
		for _, id := range nodes {
			a.do(TypeSetNodeStatus, SetNodeStatus{ID: id, Status: NodeDown})
			a.do(TypeRegisterNode, RegisterNode{Node: Node{ID: id}})
			a.do(TypeRemoveNode, RemoveNode{ID: id})
		}
		for _, d := range s.DeploymentList() {
			a.do(TypeDeleteDeployment, DeleteDeployment{Name: d.Name})
		}
		if err := checkInvariants(s); err != nil {
			t.Fatalf("commands broke a decoded state: %v", err)
		}
	})
}

// fuzzNames are the names a fuzzed program uses for both nodes and
// deployments, chosen so that joined keys can collide.
var fuzzNames = []string{"a", "b", "c", "a\x00b", "b\x00c", "", "d", "n"}

// program turns fuzz bytes into commands, three bytes each.
func program(t testing.TB, data []byte) ([][]byte, []any) {
	var entries [][]byte
	var bodies []any
	name := func(b byte) string { return fuzzNames[int(b)%len(fuzzNames)] }
	for i := 0; i+3 <= len(data) && len(entries) < 64; i += 3 {
		op, x, y := data[i], data[i+1], data[i+2]
		var (
			typ  Type
			body any
		)
		switch op % 9 {
		case 0:
			typ, body = TypeRegisterNode, &RegisterNode{Node: Node{ID: name(x), HTTPAddr: name(y)}, Time: int64(i)}
		case 1:
			typ, body = TypeSetNodeStatus, &SetNodeStatus{ID: name(x), Status: []NodeStatus{NodeReady, NodeDown, NodeCordoned, NodeDraining, "x"}[int(y)%5], Time: int64(i)}
		case 2:
			typ, body = TypeRemoveNode, &RemoveNode{ID: name(x)}
		case 3:
			typ, body = TypePutDeployment, &PutDeployment{Deployment: Deployment{Name: name(x), Model: "m", Replicas: int(y % 4)}, IfVersion: uint64(y>>4) % 4, Create: y&8 != 0}
		case 4:
			typ, body = TypeDeleteDeployment, &DeleteDeployment{Name: name(x)}
		case 5:
			typ, body = TypeSetPlacements, &SetPlacements{Deployments: map[string][]string{name(x): {name(y)}}}
		case 6:
			typ, body = TypeSetPlacements, &SetPlacements{Deployments: map[string][]string{name(x): {name(y), name(y >> 4)}, name(y >> 2): {name(x)}}}
		case 7:
			typ, body = TypeReportPlacement, &ReportPlacement{Deployment: name(x), Node: name(y), State: []PlacementState{PlacementPulling, PlacementReady, PlacementFailed, "x"}[int(y>>4)%4]}
		case 8:
			typ, body = TypeNoop, nil
		}
		key := ""
		if op >= 128 {
			key = fmt.Sprintf("k%d", op%4)
		}
		entries = append(entries, entryKeyed(t, typ, 0, key, body))
		bodies = append(bodies, body)
	}
	return entries, bodies
}

func FuzzApplySequence(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 0, 0, 5, 0, 0, 7, 0, 0x10})
	f.Add([]byte{0, 2, 0, 0, 4, 0, 3, 0, 0, 3, 3, 0, 5, 3, 2, 5, 0, 4, 7, 0, 4})
	f.Add([]byte{0, 1, 0, 3, 2, 0, 6, 2, 0x01, 2, 1, 0, 131, 2, 0, 131, 2, 0, 4, 2, 0})
	// Nodes "b\x00c" and "c", deployments "a" and "a\x00b", then "a\x00b"
	// placed on "c" and "a" on "b\x00c": both placements join to the same
	// key unless such names are refused.
	f.Add([]byte{0, 4, 0, 0, 2, 0, 3, 0, 0, 3, 3, 0, 5, 3, 2, 5, 0, 4, 7, 0, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, bodies := program(t, data)
		s := New()
		var outs []Outcome
		for i, e := range entries {
			out, msg, panicked := applyRecover(s, uint64(i+1), e)
			if panicked {
				t.Fatalf("entry %d %q panicked: %v", i+1, e, msg)
			}
			if err := checkInvariants(s); err != nil {
				t.Fatalf("entry %d %q: %v", i+1, e, err)
			}
			if out.ErrCode == "" && !out.Replayed {
				if err := postcondition(s, bodies[i]); err != nil {
					t.Fatalf("entry %d %q: %v", i+1, e, err)
				}
			}
			outs = append(outs, out)
		}
		snap := snapshot(t, s)
		back, err := Decode(bytes.NewReader(snap))
		if err != nil {
			t.Fatalf("snapshot refused: %v", err)
		}
		if again := snapshot(t, back); !bytes.Equal(again, snap) {
			t.Fatal("snapshot does not round-trip")
		}
		other := New()
		for i, e := range entries {
			if out := other.Apply(uint64(i+1), e); !reflect.DeepEqual(out, outs[i]) {
				t.Fatalf("entry %d: outcomes differ between replicas: %+v, %+v", i+1, outs[i], out)
			}
		}
		if got := snapshot(t, other); !bytes.Equal(got, snap) {
			t.Fatal("replicas differ")
		}
	})
}
