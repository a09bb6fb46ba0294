package state

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSnapshotRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		s    func(t *testing.T) *State
	}{
		{name: "empty", s: func(*testing.T) *State { return New() }},
		{name: "populated", s: func(t *testing.T) *State { return populated(t).s }},
		{name: "every field", s: func(*testing.T) *State { return filledState() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s(t)
			first := snapshot(t, s)
			back, err := Decode(bytes.NewReader(first))
			if err != nil {
				t.Fatal(err)
			}
			if second := snapshot(t, back); !bytes.Equal(first, second) {
				t.Fatalf("round trip differs:\n%s\n%s", first, second)
			}
			mustInvariants(t, back)
		})
	}
}

func TestDecodeFillsEmptyMaps(t *testing.T) {
	s, err := Decode(strings.NewReader(`{"version":1,"state":{"index":7}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Index != 7 {
		t.Fatalf("index %d", s.Index)
	}
	mustInvariants(t, s)
	// Every command works on it.
	a := &applier{t: t, s: s, next: 8}
	a.node("n1")
	a.deployment("d")
	a.place("d", "n1")
	a.raw(entryKeyed(t, TypeNoop, 0, "k", nil))
	mustInvariants(t, s)
}

func TestDecodeRejects(t *testing.T) {
	node := `{"id":"n1","http_addr":"","raft_addr":"","status":"ready","joined_index":1}`
	dep := `{"name":"d1","model":"m","replicas":1,"version":1,"created_index":2,"modified_index":2}`
	pl := `{"deployment":"d1","node":"n1","state":"pending","modified_index":3}`
	st := func(body string) string { return `{"version":1,"state":{` + body + `}}` }
	cases := []struct {
		name string
		in   string
	}{
		{name: "empty", in: ""},
		{name: "whitespace", in: " \n"},
		{name: "garbage", in: "\x00\x01garbage"},
		{name: "not an object", in: `[1,2,3]`},
		{name: "truncated", in: `{"version":1,"state":{"index":3,"nodes":{`},
		{name: "no version", in: `{"state":{}}`},
		{name: "version zero", in: `{"version":0,"state":{}}`},
		{name: "negative version", in: `{"version":-1,"state":{}}`},
		{name: "version a string", in: `{"version":"1","state":{}}`},
		{name: "no state", in: `{"version":1}`},
		{name: "null state", in: `{"version":1,"state":null}`},
		{name: "index a string", in: st(`"index":"7"`)},
		{name: "negative index", in: st(`"index":-7`)},
		{name: "nodes a list", in: st(`"nodes":[]`)},
		{name: "null node", in: st(`"nodes":{"n1":null}`)},
		{name: "node under another id", in: st(`"nodes":{"n2":` + node + `}`)},
		{name: "node id with NUL", in: st(`"nodes":{"n1\u0000x":{"id":"n1\u0000x"}}`)},
		{name: "null deployment", in: st(`"deployments":{"d1":null}`)},
		{name: "deployment name with NUL", in: st(`"deployments":{"d\u0000x":{"name":"d\u0000x","model":"m"}}`)},
		{name: "empty node id", in: st(`"nodes":{"":{"id":""}}`)},
		{name: "deployment under another name", in: st(`"deployments":{"d2":` + dep + `}`)},
		{name: "null placement", in: st(`"placements":{"d1\u0000n1":null}`)},
		{name: "placement under another key", in: st(`"nodes":{"n1":` + node + `},"deployments":{"d1":` + dep + `},"placements":{"d1/n1":` + pl + `}`)},
		{name: "placement of a missing deployment", in: st(`"nodes":{"n1":` + node + `},"placements":{"d1\u0000n1":` + pl + `}`)},
		{name: "placement on a missing node", in: st(`"deployments":{"d1":` + dep + `},"placements":{"d1\u0000n1":` + pl + `}`)},
		{name: "null api key", in: st(`"api_keys":{"a":null}`)},
		{name: "null quota", in: st(`"quotas":{"a":null}`)},
		{name: "null usage", in: st(`"usage":{"a":null}`)},
		{name: "idem key not in order", in: st(`"idem":{"k":{"index":1}}`)},
		{name: "idem order key not remembered", in: st(`"idem_order":["k"]`)},
		{name: "idem key listed twice", in: st(`"idem":{"k":{"index":1},"j":{"index":2}},"idem_order":["k","k"]`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Decode(strings.NewReader(tc.in))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(%q) = %v, %v; want ErrCorrupt", tc.in, s, err)
			}
			if s != nil {
				t.Fatal("a state came back with the error")
			}
		})
	}
	// The valid versions of the documents above are accepted.
	for _, in := range []string{
		st(`"nodes":{"n1":` + node + `},"deployments":{"d1":` + dep + `},"placements":{"d1\u0000n1":` + pl + `}`),
		st(`"idem":{"k":{"index":1},"j":{"index":2}},"idem_order":["j","k"]`),
	} {
		if _, err := Decode(strings.NewReader(in)); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
		}
	}
}

func TestDecodeReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := Decode(io.MultiReader(strings.NewReader(`{"version":1,`), iotest.ErrReader(boom)))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestEncodeWriteError(t *testing.T) {
	if err := populated(t).s.Encode(failWriter{}); err == nil {
		t.Fatal("Encode to a failing writer succeeded")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("no space") }
