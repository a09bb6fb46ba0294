package plainjson

import (
	"encoding/json"
	"testing"
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
