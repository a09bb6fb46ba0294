package state

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

func TestIdempotentReplay(t *testing.T) {
	dep := func(model string) PutDeployment {
		return PutDeployment{Deployment: Deployment{Name: "d", Model: model, Replicas: 1}}
	}
	cases := []struct {
		name   string
		first  []byte
		second []byte
	}{
		{
			name:   "success is replayed",
			first:  entryKeyed(t, TypePutDeployment, 0, "k", dep("m1")),
			second: entryKeyed(t, TypePutDeployment, 0, "k", dep("m1")),
		},
		{
			name:   "a different command under the same key gets the first outcome",
			first:  entryKeyed(t, TypePutDeployment, 0, "k", dep("m1")),
			second: entryKeyed(t, TypeDeleteDeployment, 0, "k", DeleteDeployment{Name: "d"}),
		},
		{
			name:   "business error is replayed",
			first:  entryKeyed(t, TypeRemoveNode, 0, "k", RemoveNode{ID: "n9"}),
			second: entryKeyed(t, TypeRemoveNode, 0, "k", RemoveNode{ID: "n9"}),
		},
		{
			name:   "error replayed even when the retry would now succeed",
			first:  entryKeyed(t, TypeDeleteDeployment, 0, "k", DeleteDeployment{Name: "other"}),
			second: entryKeyed(t, TypeDeleteDeployment, 0, "k", DeleteDeployment{Name: "d"}),
		},
		{
			name:   "noop is replayed",
			first:  entryKeyed(t, TypeNoop, 0, "k", nil),
			second: entryKeyed(t, TypePutDeployment, 0, "k", dep("m2")),
		},
		{
			name:   "skipped command is replayed",
			first:  entryKeyed(t, Type(200), FlagIgnorable, "k", map[string]int{"x": 1}),
			second: entryKeyed(t, TypePutDeployment, 0, "k", dep("m2")),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.ok(TypePutDeployment, dep("m0")) // index 1
			first := a.raw(tc.first)           // index 2
			before := withoutIndex(t, a.s)
			second := a.raw(tc.second) // index 3
			if !second.Replayed {
				t.Fatalf("second outcome %+v is not replayed", second)
			}
			if a.s.Index != 3 {
				t.Errorf("state index %d after the replay, want 3", a.s.Index)
			}
			want := first
			want.Replayed = true
			if !reflect.DeepEqual(second, want) {
				t.Errorf("replayed %+v, want %+v", second, want)
			}
			if second.Index != 2 {
				t.Errorf("replayed index %d, want the first application's 2", second.Index)
			}
			unchangedBut(t, before, a.s)
			if a.s.Idem["k"].Replayed {
				t.Error("the remembered outcome is marked replayed")
			}
			third := a.raw(tc.second)
			if !reflect.DeepEqual(third, want) {
				t.Errorf("third application %+v, want %+v", third, want)
			}
			mustInvariants(t, a.s)
		})
	}
}

func TestIdempotencyKeysAreIndependent(t *testing.T) {
	a := newApplier(t)
	a.raw(entryKeyed(t, TypePutDeployment, 0, "k1", PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}}))
	out := a.raw(entryKeyed(t, TypePutDeployment, 0, "k2", PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}}))
	if out.Replayed || decodeValue[Deployment](t, out).Version != 2 {
		t.Fatalf("second key: %+v, want a fresh write at version 2", out)
	}
	// Without a key nothing is remembered.
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}})
	if len(a.s.Idem) != 2 || len(a.s.IdemOrder) != 2 {
		t.Fatalf("remembered %d keys (%v), want 2", len(a.s.Idem), a.s.IdemOrder)
	}
}

func TestReplayedValueIsACopy(t *testing.T) {
	a := newApplier(t)
	e := entryKeyed(t, TypePutDeployment, 0, "k", PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}})
	first := a.raw(e)
	remembered := bytes.Clone(a.s.Idem["k"].Value)
	first.Value[0] = 'X'
	second := a.raw(e)
	second.Value[0] = 'Y'
	if got := a.s.Idem["k"].Value; !bytes.Equal(got, remembered) {
		t.Fatalf("a writer changed the remembered value: %s, was %s", got, remembered)
	}
}

func TestIdempotencyMemoryIsBounded(t *testing.T) {
	a := newApplier(t)
	key := func(i int) string { return fmt.Sprintf("key-%05d", i) }
	put := func(i int) []byte {
		return entryKeyed(t, TypePutDeployment, 0, key(i), PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}})
	}
	for i := range MaxIdempotencyKeys {
		if out := a.raw(put(i)); out.Replayed || out.ErrCode != "" {
			t.Fatalf("key %d: %+v", i, out)
		}
	}
	if len(a.s.Idem) != MaxIdempotencyKeys || len(a.s.IdemOrder) != MaxIdempotencyKeys {
		t.Fatalf("remembered %d/%d keys, want %d", len(a.s.Idem), len(a.s.IdemOrder), MaxIdempotencyKeys)
	}
	// Still remembered at the limit.
	if out := a.raw(put(0)); !out.Replayed {
		t.Fatal("key 0 forgotten at the limit")
	}

	// One more key forgets the oldest, and only it.
	a.raw(put(MaxIdempotencyKeys))
	mustInvariants(t, a.s)
	if len(a.s.Idem) != MaxIdempotencyKeys {
		t.Fatalf("remembered %d keys, want %d", len(a.s.Idem), MaxIdempotencyKeys)
	}
	if _, ok := a.s.Idem[key(0)]; ok {
		t.Fatal("oldest key still remembered")
	}
	if a.s.IdemOrder[0] != key(1) || a.s.IdemOrder[len(a.s.IdemOrder)-1] != key(MaxIdempotencyKeys) {
		t.Fatalf("order runs %s..%s", a.s.IdemOrder[0], a.s.IdemOrder[len(a.s.IdemOrder)-1])
	}
	version := a.s.Deployments["d"].Version
	if out := a.raw(put(0)); out.Replayed {
		t.Fatal("forgotten key replayed")
	}
	if a.s.Deployments["d"].Version != version+1 {
		t.Fatal("a retry with a forgotten key was not applied again")
	}
	// That retry was remembered anew and forgot key 1.
	if _, ok := a.s.Idem[key(1)]; ok {
		t.Fatal("key 1 still remembered")
	}

	// The memory and its order survive a snapshot.
	restored, err := Decode(bytes.NewReader(snapshot(t, a.s)))
	if err != nil {
		t.Fatal(err)
	}
	if out := restored.Apply(a.next, put(2)); !out.Replayed {
		t.Fatal("restored state forgot key 2")
	}
	restored.Apply(a.next+1, put(MaxIdempotencyKeys+1))
	if _, ok := restored.Idem[key(2)]; ok {
		t.Fatal("restored state did not forget its oldest key")
	}
	mustInvariants(t, restored)
}
