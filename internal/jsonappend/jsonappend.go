// Package jsonappend writes JSON values by appending to a byte slice,
// with exactly the bytes encoding/json's Marshal writes for the same Go
// value. sovra's hot paths (the chunks of a stream, the request it sends
// to Ollama) build their JSON with it instead of reflecting over structs.
package jsonappend

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/sovra/sovra/internal/bytescan"
)

const hexDigits = "0123456789abcdef"

// String appends s quoted as encoding/json quotes it: control
// characters, the quote and the backslash escaped, <, > and & as \u00XX,
// U+2028 and U+2029 escaped, and invalid UTF-8 replaced by U+FFFD.
func String(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if plain[s[i]] {
			i = PlainRun(s, i+1)
			continue
		}
		if b := s[i]; b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// plain marks the bytes written as they are: printable ASCII but the
// quote, the backslash, <, > and &.
var plain = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// PlainRun is the index of the first byte of s from i that String does
// not write as it is (len(s) if none): most text is plain ASCII, looked
// at eight bytes at a time.
func PlainRun(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		x := bytescan.Word(s, i)
		if bytescan.Below(x, 0x20)|bytescan.NonASCII(x)|bytescan.Has(x, '"')|bytescan.Has(x, '\\')|
			bytescan.Has(x, '<')|bytescan.Has(x, '>')|bytescan.Has(x, '&') != 0 {
			break
		}
	}
	for i < len(s) && plain[s[i]] {
		i++
	}
	return i
}

// Float64 appends f as encoding/json writes a float64 and reports true, or
// appends nothing and reports false for the values it leaves to
// encoding/json: NaN and the infinities (which encoding/json refuses) and
// magnitudes written with an exponent (below 1e-6 or from 1e21).
func Float64(dst []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, false
	}
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return dst, false
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64), true
}
