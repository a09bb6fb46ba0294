package api

import (
	"bytes"
	"encoding/json"

	"github.com/sovra/sovra/internal/bytescan"
)

// MaxModelName is the longest model name accepted, in bytes (as sent,
// JSON escapes included). Longer names are refused without being echoed.
const MaxModelName = 256

// jsonLimits bound the shape of a JSON request body, so that a body within
// the size limit cannot decode into many times its size.
type jsonLimits struct {
	depth    int // nesting of arrays and objects
	values   int // values of any kind in the document
	messages int // items of a top-level "messages" or "input" array
}

// listKeys are the top-level arrays whose items are counted against
// jsonLimits.messages.
var listKeys = [][]byte{[]byte("messages"), []byte("input")}

var modelKey = []byte("model")

func limitError(param, format string, args ...any) *Error {
	e := invalidParam(param, format, args...)
	e.Code = "limit_exceeded"
	return e
}

func modelTooLong(n int) *Error {
	return limitError("model", "the model name is %d bytes long; at most %d are accepted", n, MaxModelName)
}

// checkModelName refuses a model name longer than MaxModelName.
func checkModelName(name string) error {
	if len(name) > MaxModelName {
		return modelTooLong(len(name))
	}
	return nil
}

// jsonScan walks a JSON document once, without allocating, to check it
// against the limits before it is decoded. It does not validate the
// syntax (the decoder does): it only counts.
type jsonScan struct {
	lim    jsonLimits
	b      []byte
	i      int
	stack  []byte // '{' or '[' per open container
	values int
	// key is the last top-level key read; list is the depth of the
	// counted array being read (0: none) and items its count.
	key   []byte
	list  int
	items int
}

// checkJSON checks body against lim; nil when within.
func checkJSON(body []byte, lim jsonLimits) *Error {
	sc := jsonScan{lim: lim, b: body, stack: make([]byte, 0, 16)}
	for sc.i < len(sc.b) {
		if err := sc.step(); err != nil {
			return err
		}
	}
	return nil
}

func (sc *jsonScan) step() *Error {
	c := sc.b[sc.i]
	switch c {
	case ' ', '\t', '\r', '\n', ',', ':':
		sc.i++
		return nil
	case '{', '[':
		return sc.open(c)
	case '}', ']':
		sc.close()
		return nil
	case '"':
		return sc.str()
	}
	return sc.scalar()
}

// value counts one value starting at the current depth.
func (sc *jsonScan) value() *Error {
	sc.values++
	if sc.values > sc.lim.values {
		return limitError("", "the request body holds more than %d JSON values", sc.lim.values)
	}
	if sc.list > 0 && len(sc.stack) == sc.list {
		sc.items++
		if sc.items > sc.lim.messages {
			return limitError(string(sc.key), "%s may hold at most %d items", sc.key, sc.lim.messages)
		}
	}
	return nil
}

func (sc *jsonScan) open(c byte) *Error {
	if err := sc.value(); err != nil {
		return err
	}
	sc.stack = append(sc.stack, c)
	if len(sc.stack) > sc.lim.depth {
		return limitError("", "the request body nests JSON deeper than %d levels", sc.lim.depth)
	}
	if c == '[' && len(sc.stack) == 2 && sc.stack[0] == '{' && sc.isListKey() {
		sc.list, sc.items = 2, 0
	}
	sc.i++
	return nil
}

func (sc *jsonScan) isListKey() bool {
	for _, k := range listKeys {
		if bytes.EqualFold(sc.key, k) {
			return true
		}
	}
	return false
}

// topKey is a key of the top-level object as the request types match it
// to their fields: unescaped (encoding/json then compares it ignoring
// case, as bytes.EqualFold does: "Messages" and "mod\u0065l" are
// messages and model).
func topKey(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	var s string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
		return raw
	}
	return []byte(s)
}

func (sc *jsonScan) close() {
	if n := len(sc.stack); n > 0 {
		if n == sc.list {
			sc.list = 0
		}
		sc.stack = sc.stack[:n-1]
	}
	sc.i++
}

// str reads a string: a key of the top-level object is remembered, a
// value counted (and, under the top-level "model" key, measured).
func (sc *jsonScan) str() *Error {
	start := sc.i + 1
	end := start
	for end < len(sc.b) && sc.b[end] != '"' {
		if sc.b[end] == '\\' {
			end++
		}
		end++
		// Skip the words of eight bytes with neither a quote nor a
		// backslash (most of a prompt).
		for end+8 <= len(sc.b) {
			x := bytescan.Word(sc.b, end)
			if bytescan.Has(x, '"')|bytescan.Has(x, '\\') != 0 {
				break
			}
			end += 8
		}
	}
	end = min(end, len(sc.b))
	sc.i = end + 1
	s := sc.b[start:end]
	if sc.isKey() {
		if len(sc.stack) == 1 {
			sc.key = topKey(s)
		}
		return nil
	}
	if len(sc.stack) == 1 && bytes.EqualFold(sc.key, modelKey) && len(s) > MaxModelName {
		return modelTooLong(len(s))
	}
	return sc.value()
}

// isKey says whether the string just read is an object key: a colon
// follows it.
func (sc *jsonScan) isKey() bool {
	for j := sc.i; j < len(sc.b); j++ {
		switch sc.b[j] {
		case ' ', '\t', '\r', '\n':
			continue
		case ':':
			return true
		}
		return false
	}
	return false
}

// scalar reads a number or literal (or a stray byte) up to a delimiter.
func (sc *jsonScan) scalar() *Error {
	for sc.i++; sc.i < len(sc.b); sc.i++ {
		switch sc.b[sc.i] {
		case ' ', '\t', '\r', '\n', ',', ':', '{', '}', '[', ']', '"':
			return sc.value()
		}
	}
	return sc.value()
}
