package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestEncodeLayout(t *testing.T) {
	e := entryKeyed(t, TypeRemoveNode, FlagIgnorable, "req-1", RemoveNode{ID: "n1"})
	if e[0] != byte(TypeRemoveNode) || e[1] != byte(FlagIgnorable) {
		t.Fatalf("head bytes %v", e[:2])
	}
	if got, want := string(e[2:]), `{"k":"req-1","b":{"id":"n1"}}`; got != want {
		t.Fatalf("envelope %s, want %s", got, want)
	}
	d, err := decode(e)
	if err != nil {
		t.Fatal(err)
	}
	if d.typ != TypeRemoveNode || d.flags != FlagIgnorable || d.key != "req-1" || string(d.body) != `{"id":"n1"}` {
		t.Fatalf("decoded %+v", d)
	}
	// Without a key the envelope leaves it out.
	if got := string(entry(t, TypeNoop, nil)[2:]); got != `{"b":null}` {
		t.Fatalf("noop envelope %s", got)
	}
}

func TestEncodeError(t *testing.T) {
	_, err := Encode(Command{Type: TypePutDeployment, Body: func() {}})
	if err == nil || !strings.Contains(err.Error(), "put-deployment") {
		t.Fatalf("err = %v, want an error naming the command", err)
	}
}

func TestTypeString(t *testing.T) {
	want := map[Type]string{
		TypeNoop: "noop", TypeRegisterNode: "register-node", TypeSetNodeStatus: "set-node-status",
		TypeRemoveNode: "remove-node", TypePutDeployment: "put-deployment", TypeDeleteDeployment: "delete-deployment",
		TypeSetPlacements: "set-placements", TypeReportPlacement: "report-placement",
		TypeRegisterModel: "register-model", TypeUnregisterModel: "unregister-model",
		TypeTouchDeployment: "touch-deployment", TypeSetDeploymentIdle: "set-deployment-idle", TypeSetClusterCA: "set-cluster-ca", TypeSetNodeLabels: "set-node-labels",
		TypePutAPIKey: "put-api-key", TypeUpdateAPIKey: "update-api-key", TypeRotateAPIKey: "rotate-api-key",
		TypeDeleteAPIKey: "delete-api-key", TypeTouchAPIKeys: "touch-api-keys", TypeAppendAudit: "append-audit",
		TypeTrimAudit: "trim-audit", TypeRecordUsage: "record-usage", TypeRollupUsage: "rollup-usage", TypeRecordEnergy: "record-energy", Type(24): "type-24", Type(255): "type-255",
	}
	for typ, name := range want {
		if got := typ.String(); got != name {
			t.Errorf("Type(%d).String() = %q, want %q", byte(typ), got, name)
		}
	}
}

func TestUnknownIgnorableCommandIsSkipped(t *testing.T) {
	cases := []struct {
		name  string
		typ   Type
		flags Flags
		key   string
		body  any
	}{
		{name: "next type", typ: Level() + 1, flags: FlagIgnorable, body: map[string]string{"x": "y"}},
		{name: "last type", typ: 255, flags: FlagIgnorable, body: nil},
		{name: "other flags set too", typ: 42, flags: 0xff, body: []int{1, 2}},
		{name: "with a key", typ: Level() + 2, flags: FlagIgnorable, key: "k-new", body: "anything"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := populated(t)
			before := withoutIndex(t, a.s)
			index := a.next
			out := a.raw(entryKeyed(t, tc.typ, tc.flags, tc.key, tc.body))
			if !out.Skipped || out.ErrCode != "" || out.Value != nil || out.Replayed || out.Index != index {
				t.Fatalf("outcome %+v, want skipped at %d", out, index)
			}
			if a.s.Index != index {
				t.Fatalf("state index %d, want %d", a.s.Index, index)
			}
			if tc.key == "" {
				unchangedBut(t, before, a.s)
				return
			}
			// The key is remembered like any other outcome.
			if got := a.s.Idem[tc.key]; !got.Skipped {
				t.Fatalf("remembered %+v", got)
			}
			if again := a.raw(entryKeyed(t, tc.typ, tc.flags, tc.key, tc.body)); !again.Replayed || !again.Skipped {
				t.Fatalf("retry %+v", again)
			}
		})
	}
}

// mustPanic applies an entry, wants a "state:" panic holding each of want,
// and checks the state did not change at all.
func mustPanic(t *testing.T, a *applier, e []byte, want ...string) {
	t.Helper()
	msg := mustPanicWith(t, a, e)
	s, ok := msg.(string)
	if !ok || !strings.HasPrefix(s, "state: ") {
		t.Fatalf("panic %#v, want a string starting with \"state: \"", msg)
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("panic %q does not say %q", s, w)
		}
	}
}

// mustPanicWith applies an entry, wants a panic and no change to the
// state at all, and returns the panic's value.
func mustPanicWith(t *testing.T, a *applier, e []byte) any {
	t.Helper()
	before := snapshot(t, a.s)
	msg, panicked := panicMessage(func() { a.s.Apply(a.next, e) })
	if !panicked {
		t.Fatalf("entry %q applied without a panic", e)
	}
	if after := snapshot(t, a.s); string(after) != string(before) {
		t.Fatalf("a panicking entry changed the state:\nbefore %s\nafter  %s", before, after)
	}
	return msg
}

// TestUnknownCommandPanics: a type this version does not know, without
// FlagIgnorable, panics with an *UnknownTypeError naming the entry and
// the type, and changes nothing.
func TestUnknownCommandPanics(t *testing.T) {
	cases := []struct {
		name  string
		typ   Type
		flags Flags
		key   string
	}{
		{name: "no flags", typ: Level() + 1},
		{name: "last type", typ: 255},
		{name: "another flag, not ignorable", typ: Level() + 1, flags: 0xfe},
		{name: "with a new key", typ: Level() + 1, key: "k-new"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := populated(t)
			index := a.next
			msg := mustPanicWith(t, a, entryKeyed(t, tc.typ, tc.flags, tc.key, map[string]int{"x": 1}))
			u, ok := msg.(*UnknownTypeError)
			if !ok || u.Index != index || u.Type != tc.typ || !errors.Is(u, ErrUnknownType) {
				t.Fatalf("panic %#v, want an *UnknownTypeError of type %d at %d", msg, tc.typ, index)
			}
			if want := fmt.Sprintf("command type %d, which this version (command level %d) does not know and may not skip", tc.typ, Level()); !strings.Contains(u.Error(), want) {
				t.Fatalf("error %q does not say %q", u, want)
			}
		})
	}
}

func TestUnknownCommandWithKnownKeyIsReplayed(t *testing.T) {
	// The key is looked up before the type: a retry that a newer version
	// wrote under the key of a command this one applied gets its outcome.
	a := populated(t)
	if out := a.raw(entryKeyed(t, Type(10), 0, "k1", nil)); !out.Replayed {
		t.Fatalf("outcome %+v", out)
	}
}

func TestCorruptEntriesPanic(t *testing.T) {
	head := func(typ Type, env string) []byte { return append([]byte{byte(typ), 0}, env...) }
	cases := []struct {
		name  string
		entry []byte
		want  string
	}{
		{name: "nil", entry: nil, want: "0 bytes"},
		{name: "one byte", entry: []byte{1}, want: "1 bytes"},
		{name: "no envelope", entry: []byte{1, 0}, want: "corrupt command"},
		{name: "envelope not JSON", entry: head(TypeNoop, "hello"), want: "corrupt command"},
		{name: "envelope truncated", entry: head(TypeRemoveNode, `{"b":{"id":"n1"}`), want: "corrupt command"},
		{name: "envelope an array", entry: head(TypeRemoveNode, `[1,2]`), want: "corrupt command"},
		{name: "envelope with trailing bytes", entry: head(TypeRemoveNode, `{"b":{"id":"n1"}}x`), want: "corrupt command"},
		{name: "key not a string", entry: head(TypeRemoveNode, `{"k":1,"b":{"id":"n1"}}`), want: "corrupt command"},
		{name: "missing body", entry: head(TypeRemoveNode, `{}`), want: "remove-node"},
		{name: "register body a string", entry: head(TypeRegisterNode, `{"b":"n1"}`), want: "register-node"},
		{name: "register node a string", entry: head(TypeRegisterNode, `{"b":{"node":"n1"}}`), want: "register-node"},
		{name: "register gpu index too large", entry: head(TypeRegisterNode, `{"b":{"node":{"id":"n3","gpus":[{"index":1e100}]}}}`), want: "register-node"},
		{name: "status time a string", entry: head(TypeSetNodeStatus, `{"b":{"id":"n1","status":"down","time":"now"}}`), want: "set-node-status"},
		{name: "remove body an array", entry: head(TypeRemoveNode, `{"b":["n1"]}`), want: "remove-node"},
		{name: "put replicas fractional", entry: head(TypePutDeployment, `{"b":{"deployment":{"name":"d2","model":"m","replicas":1.5}}}`), want: "put-deployment"},
		{name: "put if_version negative", entry: head(TypePutDeployment, `{"b":{"deployment":{"name":"d1","model":"m"},"if_version":-1}}`), want: "put-deployment"},
		{name: "delete name a number", entry: head(TypeDeleteDeployment, `{"b":{"name":7}}`), want: "delete-deployment"},
		{name: "placements nodes a string", entry: head(TypeSetPlacements, `{"b":{"deployments":{"d1":"n1"}}}`), want: "set-placements"},
		{name: "placements a list", entry: head(TypeSetPlacements, `{"b":{"deployments":["d1"]}}`), want: "set-placements"},
		{name: "report progress a string", entry: head(TypeReportPlacement, `{"b":{"deployment":"d1","node":"n1","state":"ready","progress":"half"}}`), want: "report-placement"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustPanic(t, populated(t), tc.entry, tc.want)
		})
	}
}

func TestLenientBodies(t *testing.T) {
	// What the decoder accepts must apply the same way everywhere; these
	// pin down the cases that are easy to get wrong.
	head := func(typ Type, env string) []byte { return append([]byte{byte(typ), 0}, env...) }
	cases := []struct {
		name    string
		entry   []byte
		errCode string
	}{
		{name: "noop ignores its body", entry: head(TypeNoop, `{"b":{"anything":[1,2,3]}}`)},
		{name: "noop without a body", entry: head(TypeNoop, `{}`)},
		{name: "null body is an empty command", entry: head(TypeRemoveNode, `{"b":null}`), errCode: "not_found"},
		{name: "unknown fields are ignored", entry: head(TypeRemoveNode, `{"b":{"id":"n2","color":"red"},"x":1}`)},
		{name: "null placement plan changes nothing", entry: head(TypeSetPlacements, `{"b":{"deployments":null}}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := populated(t)
			out := a.raw(tc.entry)
			wantErr(t, out, tc.errCode)
			mustInvariants(t, a.s)
		})
	}
}

func TestOutcomeRoundTrips(t *testing.T) {
	a := populated(t)
	out := a.ok(TypeReportPlacement, ReportPlacement{Deployment: "d1", Node: "n2", State: PlacementFailed, Reason: "disk full"})
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var back Outcome
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if string(back.Value) != string(out.Value) || back.Index != out.Index {
		t.Fatalf("round trip %+v, want %+v", back, out)
	}
}
