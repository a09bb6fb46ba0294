package plainjson

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/valyala/fastjson"
)

// TestNumber: Number takes what JSON's grammar takes, as encoding/json
// reads it.
func TestNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "-12", "1.5", "0.25", "1e3", "1E+3", "-2.5e-3", "1e400",
		"", "-", "01", "+1", ".5", "1.", "1e", "1e+", "-.5", "inf", "NaN", "0x10", "1_000", "--1", "1.5.5"} {
		if got, want := Number([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Number(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestStrict(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"a":"b"}`, true},
		{"{\n\t\"a\": \"b\"\r\n}", true},
		{`{"a":"\"\\\/\b\f\n\r\t\u00e9"}`, true},
		{`{"a":"\ud83d\ude00"}`, true},
		{"{\"a\":\"b\tc\"}", false},
		{"{\x01}", false},
		{`{"a":"\x"}`, false},
		{`{"a":"\u12"}`, false},
		{`{"a":"\ud800"}`, false},
		{`{"a":"\ud800\u0041"}`, false},
		{`{"a":"\udc00"}`, false},
		{`{"a":"\ud800\ud800"}`, false},
		{`{"a":1}\`, false},
		{`{"a":"b}`, false},
		// Long plain runs, looked at eight bytes at a time.
		{`{"a":"0123456789abcdefghijklmnop\n0123456789abcdef","b":"0123456789"}`, true},
		{"{\"a\":\"0123456789abcdefghijklmnop\x01qrstuvwxyz\"}", false},
		{`{"a":"0123456789abcdefghijklmnop\q0123456789"}`, false},
		{`{"a":"0123456789abcdefghijklmnop"0123456789"}`, false},
		{`{"a":"0123456789abcdefghijklmnopqrstuvwxyz0123456789\ud800"}`, false},
	} {
		if got := Strict([]byte(tc.body)); got != tc.want {
			t.Errorf("Strict(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// TestNumberValues: IntValue and FloatValue read what encoding/json
// reads into an int64 and a float64, and refuse the rest.
func TestNumberValues(t *testing.T) {
	for _, tc := range []struct {
		doc string
		i   int64
		iOK bool
		f   float64
		fOK bool
	}{
		{"42", 42, true, 42, true},
		{"-7", -7, true, -7, true},
		{"0", 0, true, 0, true},
		{"1.5", 0, false, 1.5, true},
		{"1e3", 0, false, 1000, true},
		{"012", 0, false, 0, false},
		{"9223372036854775808", 0, false, 9223372036854775808, true},
		{"1e400", 0, false, 0, false},
		{`"5"`, 0, false, 0, false},
	} {
		v, err := fastjson.Parse(tc.doc)
		if err != nil {
			t.Fatalf("%s: %v", tc.doc, err)
		}
		if i, ok := IntValue(v); ok != tc.iOK || ok && i != tc.i {
			t.Errorf("IntValue(%s) = %d, %v; want %d, %v", tc.doc, i, ok, tc.i, tc.iOK)
		}
		if f, ok := FloatValue(v); ok != tc.fOK || ok && f != tc.f {
			t.Errorf("FloatValue(%s) = %g, %v; want %g, %v", tc.doc, f, ok, tc.f, tc.fOK)
		}
	}
}

func TestTextOfGivesTheKnownString(t *testing.T) {
	known := []string{"user", "assistant"}
	var p fastjson.Parser
	for _, tc := range []struct {
		in    string
		want  string
		known bool
		ok    bool
	}{
		{`"assistant"`, "assistant", true, true},
		{`"Assistant"`, "Assistant", false, true},
		{`"us\u0065r"`, "user", true, true},
		{"\"\xff\"", "\xff", false, false},
		{`1`, "", false, false},
	} {
		v, err := p.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := TextOf(v, known)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if tc.known && unsafe.StringData(got) != unsafe.StringData(known[slices.Index(known, tc.want)]) {
			t.Errorf("%s: a new string, not the known one", tc.in)
		}
	}
	v, _ := p.Parse(`"user"`)
	if n := testing.AllocsPerRun(100, func() { _, _ = TextOf(v, known) }); n != 0 {
		t.Errorf("a known string costs %v allocations", n)
	}
}

func TestInternerRemembersWithinItsBound(t *testing.T) {
	in := Interner{Max: 2}
	var p fastjson.Parser
	text := func(s string) string {
		t.Helper()
		v, err := p.Parse(strconv.Quote(s))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := in.Text(v)
		if got != s || !ok {
			t.Fatalf("%q: %q %v", s, got, ok)
		}
		return got
	}
	a := text("llama3.2:1b")
	if b := text("llama3.2:1b"); unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("the same name twice: two strings, want the remembered one")
	}
	v, _ := p.Parse(`"llama3.2:1b"`)
	if n := testing.AllocsPerRun(100, func() { _, _ = in.Text(v) }); n != 0 {
		t.Errorf("a remembered name costs %v allocations", n)
	}
	text("qwen3:0.6b")
	x, y := text("third"), text("third")
	if unsafe.StringData(x) == unsafe.StringData(y) {
		t.Error("a name past the bound was remembered")
	}
	if m := in.m.Load(); len(*m) != 2 {
		t.Errorf("%d names remembered, want the bound, 2", len(*m))
	}
	in = Interner{Max: 10}
	long := strings.Repeat("m", maxInterned+1)
	if x, y := text(long), text(long); unsafe.StringData(x) == unsafe.StringData(y) {
		t.Error("a name longer than the limit was remembered")
	}
	bad, _ := p.Parse("\"\xff\"")
	if _, ok := in.Text(bad); ok {
		t.Error("invalid UTF-8 taken as text")
	}
}
