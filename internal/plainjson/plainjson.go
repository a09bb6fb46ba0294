// Package plainjson holds the checks shared by the fast JSON paths: those
// that read a few common, plain shapes with fastjson and leave anything
// else to encoding/json. fastjson takes some input that encoding/json
// refuses or reads otherwise (odd escapes, control characters, invalid
// UTF-8, numbers JSON does not allow); a fast path that meets any of it
// must decline, so that what a body means never depends on the path.
package plainjson

import (
	"bytes"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/sovra/sovra/internal/bytescan"
)

// Strict says whether b is free of what fastjson takes and encoding/json
// refuses or reads otherwise: escapes other than JSON's (\x, \u with
// fewer than four hex digits), control characters inside strings, and a
// \u escape of a UTF-16 surrogate other than a high one followed by a
// low one (fastjson keeps a lone one as text; encoding/json makes it
// U+FFFD). JSON's whitespace is allowed between tokens. (fastjson's own
// validator is stricter but costs twice the parse.)
func Strict(b []byte) bool {
	in := false // inside a string
	for i := 0; i < len(b); i++ {
		// Skip the words of eight bytes with nothing to look at.
		for i+8 <= len(b) {
			x := bytescan.Word(b, i)
			if bytescan.Below(x, 0x20)|bytescan.Has(x, '"')|bytescan.Has(x, '\\') != 0 {
				break
			}
			i += 8
		}
		if i == len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			in = !in
		case c < 0x20:
			if in || c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				return false
			}
		case c == '\\':
			if !in || i+1 >= len(b) {
				return false
			}
			i++
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				r, ok := escape(b[i-1:])
				switch {
				case !ok:
					return false
				case 0xd800 <= r && r < 0xdc00:
					lo, ok := escape(b[i+5:])
					if !ok || lo < 0xdc00 || lo > 0xdfff {
						return false
					}
					i += 10
				case 0xdc00 <= r && r <= 0xdfff:
					return false
				default:
					i += 4
				}
			default:
				return false
			}
		}
	}
	return !in
}

// escape is the code unit of the \uXXXX escape that b starts with.
func escape(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' || !hex4(b[2:6]) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
	return rune(n), err == nil
}

// numBufs hold a number's text while IntValue and FloatValue check it (a
// buffer on the stack escapes through fastjson's MarshalTo).
var numBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32); return &b }}

// IntValue is f's value when f is an integer as JSON writes one (see Int)
// within int64; false otherwise.
func IntValue(f *fastjson.Value) (int64, bool) {
	if f.Type() != fastjson.TypeNumber {
		return 0, false
	}
	buf := numBufs.Get().(*[]byte)
	defer numBufs.Put(buf)
	*buf = f.MarshalTo((*buf)[:0])
	if !Int(*buf) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(*buf), 10, 64)
	return n, err == nil
}

// FloatValue is f's value as encoding/json reads a number into a
// float64: false for what JSON's grammar refuses or is out of range.
func FloatValue(f *fastjson.Value) (float64, bool) {
	if f.Type() != fastjson.TypeNumber {
		return 0, false
	}
	buf := numBufs.Get().(*[]byte)
	defer numBufs.Put(buf)
	*buf = f.MarshalTo((*buf)[:0])
	if !Number(*buf) {
		return 0, false
	}
	x, err := strconv.ParseFloat(string(*buf), 64)
	return x, err == nil
}

// Int says whether b is an integer as JSON writes one: no leading zeros
// (which fastjson takes and encoding/json refuses), no fraction or
// exponent.
func Int(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("-"))
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Number says whether b is a number as JSON's grammar has it (fastjson
// also takes a leading '+', "inf", "nan", ".5", "1." and the like).
func Number(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("-"))
	i := digits(b, 0)
	if i == 0 || (b[0] == '0' && i > 1) {
		return false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(b)
}

// digits is the end of the run of decimal digits in b from i.
func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

func hex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Text is a JSON string's value, valid UTF-8 (encoding/json would replace
// invalid bytes).
func Text(f *fastjson.Value) (string, bool) {
	if f.Type() != fastjson.TypeString {
		return "", false
	}
	b := f.GetStringBytes()
	return string(b), utf8.Valid(b)
}
