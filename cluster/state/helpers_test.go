package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// entry encodes a command or fails the test.
func entry(t testing.TB, typ Type, body any) []byte {
	t.Helper()
	return entryKeyed(t, typ, 0, "", body)
}

// entryKeyed encodes a command with flags and an idempotency key.
func entryKeyed(t testing.TB, typ Type, flags Flags, key string, body any) []byte {
	t.Helper()
	b, err := Encode(Command{Type: typ, Flags: flags, Key: key, Body: body})
	if err != nil {
		t.Fatalf("encode %v: %v", typ, err)
	}
	return b
}

// entryAudited encodes a command with an audit record attached.
func entryAudited(t testing.TB, typ Type, body any, r AuditRecord) []byte {
	t.Helper()
	b, err := Encode(Command{Type: typ, Body: body, Audit: &r})
	if err != nil {
		t.Fatalf("encode %v: %v", typ, err)
	}
	return b
}

// applier applies commands to a state at increasing indexes.
type applier struct {
	t    testing.TB
	s    *State
	next uint64
}

func newApplier(t testing.TB) *applier { return &applier{t: t, s: New(), next: 1} }

// do applies one command and returns its outcome.
func (a *applier) do(typ Type, body any) Outcome {
	a.t.Helper()
	return a.raw(entry(a.t, typ, body))
}

// ok applies one command and fails the test on a business error.
func (a *applier) ok(typ Type, body any) Outcome {
	a.t.Helper()
	out := a.do(typ, body)
	if out.ErrCode != "" {
		a.t.Fatalf("%v: unexpected error %s: %s", typ, out.ErrCode, out.ErrMsg)
	}
	return out
}

func (a *applier) raw(e []byte) Outcome {
	a.t.Helper()
	out := a.s.Apply(a.next, e)
	a.next++
	return out
}

func (a *applier) node(id string) {
	a.t.Helper()
	a.ok(TypeRegisterNode, RegisterNode{Node: Node{ID: id, HTTPAddr: id + ":8080", RaftAddr: id + ":7000"}, Time: 100})
}

func (a *applier) deployment(name string) {
	a.t.Helper()
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: name, Model: "llama3:8b", Replicas: 1}})
}

func (a *applier) place(name string, nodes ...string) {
	a.t.Helper()
	a.ok(TypeSetPlacements, SetPlacements{Deployments: map[string][]string{name: nodes}})
}

// populated returns a state with some of everything in it.
func populated(t testing.TB) *applier {
	t.Helper()
	a := newApplier(t)
	a.node("n1")
	a.node("n2")
	a.deployment("d1")
	a.place("d1", "n1", "n2")
	a.raw(entryKeyed(t, TypeReportPlacement, 0, "k1", ReportPlacement{Deployment: "d1", Node: "n1", State: PlacementPulling, Progress: 0.5}))
	return a
}

// snapshot returns the encoded state.
func snapshot(t testing.TB, s *State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Encode(&buf); err != nil {
		t.Fatalf("encode snapshot: %v", err)
	}
	return buf.Bytes()
}

// withoutIndex returns the encoded state with Index zeroed, to compare two
// states that differ only in the last applied index.
func withoutIndex(t testing.TB, s *State) []byte {
	t.Helper()
	c := s.Clone()
	c.Index = 0
	return snapshot(t, c)
}

// decodeValue decodes an outcome's value.
func decodeValue[V any](t testing.TB, out Outcome) V {
	t.Helper()
	var v V
	if err := json.Unmarshal(out.Value, &v); err != nil {
		t.Fatalf("outcome value %s: %v", out.Value, err)
	}
	return v
}

// placementNodes lists the nodes a deployment is placed on.
func placementNodes(s *State, deployment string) []string {
	var out []string
	for _, p := range s.PlacementsOf(deployment) {
		out = append(out, p.Node)
	}
	return out
}

// checkInvariants returns what is wrong with the state's structure, or nil.
func checkInvariants(s *State) error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if s.Nodes == nil || s.Deployments == nil || s.Placements == nil || s.APIKeys == nil || s.Quotas == nil || s.Usage == nil || s.Models == nil || s.Idem == nil {
		add("a map is nil")
	}
	for k, m := range s.Models {
		if m == nil {
			add("model %q is nil", k)
		} else if err := checkModelSpec(k, m); err != nil {
			add("model %q: %v", k, err)
		}
	}
	for k, n := range s.Nodes {
		if n == nil {
			add("node %q is nil", k)
		} else if n.ID != k {
			add("node key %q holds id %q", k, n.ID)
		}
	}
	for k, d := range s.Deployments {
		if d == nil {
			add("deployment %q is nil", k)
		} else if d.Name != k {
			add("deployment key %q holds name %q", k, d.Name)
		}
	}
	for k, p := range s.Placements {
		if p == nil {
			add("placement %q is nil", k)
			continue
		}
		if k != placementKey(p.Deployment, p.Node) {
			add("placement key %q holds %q on %q", k, p.Deployment, p.Node)
		}
		if _, ok := s.Deployments[p.Deployment]; !ok {
			add("placement %q refers to missing deployment %q", k, p.Deployment)
		}
		if _, ok := s.Nodes[p.Node]; !ok {
			add("placement %q refers to missing node %q", k, p.Node)
		}
	}
	for k, key := range s.APIKeys {
		if key == nil {
			add("key %q is nil", k)
		} else if e := checkKey(key); e != "" || key.ID != k {
			add("key %q (id %q) %s", k, key.ID, e)
		}
	}
	if len(s.IdemOrder) != len(s.Idem) {
		add("idem order has %d keys, idem map %d", len(s.IdemOrder), len(s.Idem))
	}
	if len(s.IdemOrder) > MaxIdempotencyKeys {
		add("idem remembers %d keys, more than %d", len(s.IdemOrder), MaxIdempotencyKeys)
	}
	seen := map[string]bool{}
	for _, k := range s.IdemOrder {
		if seen[k] {
			add("idem key %q is listed twice", k)
		}
		seen[k] = true
		if _, ok := s.Idem[k]; !ok {
			add("idem key %q is listed but not remembered", k)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("%s", strings.Join(errs, "; "))
}

func mustInvariants(t testing.TB, s *State) {
	t.Helper()
	if err := checkInvariants(s); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

// panicMessage runs fn and returns what it panicked with, and whether it did.
func panicMessage(fn func()) (msg any, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			msg, panicked = r, true
		}
	}()
	fn()
	return nil, false
}
