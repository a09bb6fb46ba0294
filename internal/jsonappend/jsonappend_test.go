package jsonappend

import (
	"encoding/json"
	"math"
	"testing"
)

func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " and \ slash`, "<a href='x'>&amp;</a>", "tab\tnew\nline\r\x00\x1f", "\u2028\u2029", "caf\xc3\xa9", "bad \xff utf8 \xc3", "emoji 😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := String(nil, s); string(got) != string(want) {
			t.Fatalf("String(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

func FuzzFloat64(f *testing.F) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 0.7, 1e-6, 9.99e-7, 1e20, 1e21, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		got, ok := Float64([]byte("x"), v)
		want, err := json.Marshal(v)
		switch {
		case !ok && string(got) != "x":
			t.Fatalf("Float64(%v) declined but appended %q", v, got)
		case !ok && err == nil && math.Abs(v) >= 1e-6 && math.Abs(v) < 1e21:
			t.Fatalf("Float64(%v) declined a value written without an exponent", v)
		case ok && err != nil:
			t.Fatalf("Float64(%v) wrote %q where encoding/json fails: %v", v, got, err)
		case ok && string(got) != "x"+string(want):
			t.Fatalf("Float64(%v) = %q, encoding/json writes %s", v, got[1:], want)
		}
	})
}
