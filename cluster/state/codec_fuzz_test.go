package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeCommand decodes log entries as Apply does (a type byte, a
// flags byte, a JSON envelope). Whatever the bytes: no panic; a refusal
// is ErrCorrupt; an entry that decodes encodes back to one that decodes
// the same (type, flags, key, audit record, body); and a body that
// decodes into its command's type is a fixed point of encoding: encoded,
// decoded and encoded again, it gives the same bytes.
func FuzzDecodeCommand(f *testing.F) {
	seeds := []Command{
		{Type: TypeNoop},
		{Type: TypeRegisterNode, Key: "k", Body: RegisterNode{Node: Node{ID: "n1", Labels: map[string]string{"a": "b"}, GPUs: []GPU{{Model: "H100", MemoryBytes: 1 << 30}}}, Time: 3}},
		{Type: TypePutDeployment, Flags: FlagIgnorable, Body: PutDeployment{Deployment: Deployment{Name: "d", Model: "m", Replicas: 2, Constraints: []string{"a=b"}}, Create: true}},
		{Type: TypeSetPlacements, Body: SetPlacements{Deployments: map[string][]string{"d": {"n1", "n2"}, "e": nil}}},
		{Type: TypePutAPIKey, Body: PutAPIKey{Key: APIKey{ID: "key-1", Role: RoleInference, Hash: "h", Labels: map[string]string{}}}},
		{Type: TypeRemoveNode, Body: RemoveNode{ID: "n1"}, Audit: &AuditRecord{Actor: "admin", Action: "remove-node"}},
		{Type: TypeRecordUsage, Flags: FlagIgnorable, Body: RecordUsage{}},
		{Type: Type(200), Flags: FlagIgnorable, Body: map[string]any{"x": 1}},
	}
	for _, c := range seeds {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	for _, s := range []string{"", "\x01", "\x01\x00", "\x01\x00{}", "\x01\x00null", "\x04\x00{\"b\":{\"id\":5}}", "\x04\x00{\"k\":\"x\",\"b\":[],\"a\":{}}", "\x04\x00{\"b\":{}} {}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, entry []byte) {
		d, err := decode(entry)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("entry %q: error %v is not ErrCorrupt", entry, err)
			}
			return
		}
		again := reencode(t, entry, Command{Type: d.typ, Flags: d.flags, Key: d.key, Body: d.body, Audit: d.audit})
		if again.typ != d.typ || again.flags != d.flags || again.key != d.key || !reflect.DeepEqual(again.audit, d.audit) ||
			!sameJSON(again.body, d.body) {
			t.Fatalf("entry %q decodes as %+v, its encoding as %+v", entry, d, again)
		}
		newBody, ok := bodyTypes[d.typ]
		if !ok {
			return
		}
		body := newBody()
		if json.Unmarshal(d.body, body) != nil {
			return // Apply refuses it
		}
		first, err := Encode(Command{Type: d.typ, Body: body})
		if err != nil {
			t.Fatalf("entry %q: its body does not encode: %v", entry, err)
		}
		back := newBody()
		if err := json.Unmarshal(reencode(t, entry, Command{Type: d.typ, Body: body}).body, back); err != nil {
			t.Fatalf("entry %q: an encoded body does not decode: %v", entry, err)
		}
		if second, _ := Encode(Command{Type: d.typ, Body: back}); !bytes.Equal(first, second) {
			t.Fatalf("entry %q: the body does not round-trip:\n%s\n%s", entry, first, second)
		}
	})
}

// reencode encodes c and decodes it again.
func reencode(t *testing.T, entry []byte, c Command) decoded {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("entry %q: does not encode again: %v", entry, err)
	}
	d, err := decode(b)
	if err != nil {
		t.Fatalf("entry %q: its encoding %q does not decode: %v", entry, b, err)
	}
	return d
}

// sameJSON reports whether two raw JSON values are the same value
// (absent and null alike).
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if len(a) > 0 && json.Unmarshal(a, &x) != nil || len(b) > 0 && json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
