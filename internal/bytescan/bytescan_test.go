package bytescan

import "testing"

// FuzzWordTests holds Below, Has and NonASCII to a byte-by-byte look at
// the same eight bytes.
func FuzzWordTests(f *testing.F) {
	f.Add([]byte("plain tx"), byte(0x20), byte('"'))
	f.Add([]byte("\x00\x1f\x20\x7f\x80\xff\"\\"), byte(1), byte('\\'))
	f.Add([]byte("aaaaaaa\x00"), byte(128), byte(0))
	f.Fuzz(func(t *testing.T, b []byte, n, c byte) {
		if len(b) < 8 {
			return
		}
		n = n%128 + 1
		x := Word(b, 0)
		var below, has, high bool
		for _, v := range b[:8] {
			below = below || v < n
			has = has || v == c
			high = high || v >= 0x80
		}
		if (Below(x, uint64(n)) != 0) != below {
			t.Fatalf("Below(%q, %d) = %v", b[:8], n, !below)
		}
		if (Has(x, c) != 0) != has {
			t.Fatalf("Has(%q, %q) = %v", b[:8], c, !has)
		}
		if (NonASCII(x) != 0) != high {
			t.Fatalf("NonASCII(%q) = %v", b[:8], !high)
		}
		if string(b[:8]) != string([]byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24), byte(x >> 32), byte(x >> 40), byte(x >> 48), byte(x >> 56)}) {
			t.Fatalf("Word(%q) = %x", b[:8], x)
		}
	})
}
