package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"
)

// fill sets every field reachable from v to a non-zero value: two entries
// in every map and slice, every pointer set. JSON raw messages get a valid
// document.
func fill(v reflect.Value, n *int) {
	*n++
	if v.Type() == reflect.TypeFor[json.RawMessage]() {
		v.SetBytes([]byte(fmt.Sprintf(`{"v":%d}`, *n)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, n)
			fill(e, n)
			v.SetMapIndex(k, e)
		}
	default:
		panic(fmt.Sprintf("fill: no rule for %v", v.Type()))
	}
}

func filled[T any]() T {
	var v T
	n := 0
	fill(reflect.ValueOf(&v).Elem(), &n)
	return v
}

// filledState is a state with every field set, consistent enough for
// Decode to accept.
func filledState() *State {
	s := filled[State]()
	s.Index = 42
	s.Nodes, s.Deployments, s.Placements = map[string]*Node{}, map[string]*Deployment{}, map[string]*Placement{}
	for _, id := range []string{"n1", "n2"} {
		n := filled[Node]()
		n.ID = id
		s.Nodes[id] = &n
	}
	for _, name := range []string{"d1", "d2"} {
		d := filled[Deployment]()
		d.Name = name
		s.Deployments[name] = &d
		p := filled[Placement]()
		p.Deployment, p.Node = name, "n1"
		s.Placements[placementKey(name, "n1")] = &p
	}
	s.APIKeys = map[string]*APIKey{}
	for _, id := range []string{"k1", "k2"} {
		k := filled[APIKey]()
		k.ID, k.Role, k.Hash = id, RoleInference, "hash-"+id
		s.APIKeys[id] = &k
	}
	s.Models = map[string]*ModelSpec{}
	for _, name := range []string{"m1:latest", "acme/m2:7b"} {
		m := filledSpec(name)
		s.Models[name] = &m
	}
	s.IdemOrder = s.IdemOrder[:0]
	for k := range s.Idem {
		s.IdemOrder = append(s.IdemOrder, k)
	}
	sort.Strings(s.IdemOrder)
	s.CommandLevel = LegacyLevel // a state this version can hold
	return &s
}

// zeroPaths lists what is zero or empty anywhere under v.
func zeroPaths(path string, v reflect.Value) []string {
	if v.IsZero() {
		return []string{path}
	}
	var out []string
	switch v.Kind() {
	case reflect.Pointer:
		out = zeroPaths(path, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			out = append(out, zeroPaths(path+"."+v.Type().Field(i).Name, v.Field(i))...)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			return []string{path}
		}
		for i := range v.Len() {
			out = append(out, zeroPaths(fmt.Sprintf("%s[%d]", path, i), v.Index(i))...)
		}
	case reflect.Map:
		if v.Len() == 0 {
			return []string{path}
		}
		for _, k := range v.MapKeys() {
			out = append(out, zeroPaths(fmt.Sprintf("%s[%v]", path, k), v.MapIndex(k))...)
		}
	}
	return out
}

// shared lists the maps, slices and pointers a and b have in common.
func shared(path string, a, b reflect.Value) []string {
	var out []string
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return nil
		}
		if a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		out = append(out, shared(path, a.Elem(), b.Elem())...)
	case reflect.Struct:
		for i := range a.NumField() {
			out = append(out, shared(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))...)
		}
	case reflect.Slice:
		if a.Cap() > 0 && b.Cap() > 0 && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		for i := range min(a.Len(), b.Len()) {
			out = append(out, shared(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i))...)
		}
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			out = append(out, path)
		}
		for _, k := range a.MapKeys() {
			if bv := b.MapIndex(k); bv.IsValid() {
				out = append(out, shared(fmt.Sprintf("%s[%v]", path, k), a.MapIndex(k), bv)...)
			}
		}
	}
	return out
}

func TestFilledStateFillsEveryField(t *testing.T) {
	// A field added to the state must be filled here, so the clone tests
	// below see it.
	if zero := zeroPaths("State", reflect.ValueOf(filledState())); len(zero) > 0 {
		t.Fatalf("filledState leaves zero: %v", zero)
	}
}

func TestCloneIsDeepAndEqual(t *testing.T) {
	cases := []struct {
		name string
		s    func(t *testing.T) *State
	}{
		{name: "every field", s: func(*testing.T) *State { return filledState() }},
		{name: "applied commands", s: func(t *testing.T) *State { return populated(t).s }},
		{name: "empty", s: func(*testing.T) *State { return New() }},
		{name: "empty but not nil slices", s: func(*testing.T) *State {
			s := New()
			s.Audit, s.IdemOrder = []AuditEntry{}, []string{}
			return s
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s(t)
			c := s.Clone()
			if !reflect.DeepEqual(c, s) {
				t.Fatalf("clone differs:\n%+v\n%+v", c, s)
			}
			if a, b := snapshot(t, s), snapshot(t, c); !bytes.Equal(a, b) {
				t.Fatalf("clone encodes differently:\n%s\n%s", a, b)
			}
			if sh := shared("State", reflect.ValueOf(s), reflect.ValueOf(c)); len(sh) > 0 {
				t.Fatalf("clone shares %v", sh)
			}
		})
	}
}

func TestCloneOfBareState(t *testing.T) {
	// A state built without New still clones into a usable one.
	c := (&State{Index: 3}).Clone()
	mustInvariants(t, c)
	if c.Index != 3 {
		t.Fatalf("index %d", c.Index)
	}
	a := &applier{t: t, s: c, next: 4}
	a.node("n1")
	a.raw(entryKeyed(t, TypeNoop, 0, "k", nil))

	// Null entries, which Decode refuses, are copied as they are rather
	// than dereferenced.
	s := New()
	s.Nodes["n"], s.Deployments["d"], s.Placements["p"], s.APIKeys["a"] = nil, nil, nil, nil
	c = s.Clone()
	if !reflect.DeepEqual(c, s) {
		t.Fatalf("clone %+v, want %+v", c, s)
	}
}

func TestMutatingCloneLeavesOriginal(t *testing.T) {
	s := filledState()
	want := snapshot(t, s)
	c := s.Clone()
	for _, n := range c.Nodes {
		n.HTTPAddr = "changed"
		for k := range n.Labels {
			n.Labels[k] = "changed"
		}
		n.Labels["new"] = "x"
		n.GPUs[0].Model = "changed"
	}
	for _, d := range c.Deployments {
		d.Replicas = 99
		d.Constraints[0] = "changed"
	}
	for _, p := range c.Placements {
		p.State = PlacementFailed
	}
	for _, v := range c.APIKeys {
		v.Hash = "changed"
		v.Models[0] = "changed"
		v.Jurisdictions[0] = "changed"
		v.Labels["new"] = "x"
	}
	for _, v := range c.Quotas {
		v.TokensPerMinute = -1
	}
	for _, v := range c.Usage {
		v.CompletionTokens = -1
	}
	for _, v := range c.Models {
		v.Layers = -1
	}
	c.Audit[0].Actor = "changed"
	for k, o := range c.Idem {
		o.Value[0] = '['
		c.Idem[k] = o
	}
	c.IdemOrder[0] = "changed"
	// And through Apply.
	a := &applier{t: t, s: c, next: 100}
	a.ok(TypeRemoveNode, RemoveNode{ID: "n1"})
	a.ok(TypeDeleteDeployment, DeleteDeployment{Name: "d2"})
	a.node("n3")
	if got := snapshot(t, s); !bytes.Equal(got, want) {
		t.Fatalf("changing the clone changed the original:\n%s\nwas\n%s", got, want)
	}

	// The other way round.
	c = s.Clone()
	cwant := snapshot(t, c)
	s.Nodes["n1"].Labels["new"] = "x"
	s.Deployments["d1"].Constraints[1] = "changed"
	s.Audit = append(s.Audit[:1], AuditEntry{AuditRecord: AuditRecord{Actor: "later"}})
	if got := snapshot(t, c); !bytes.Equal(got, cwant) {
		t.Fatalf("changing the original changed the clone")
	}
}
