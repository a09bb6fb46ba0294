package plainjson

import (
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// A request and its answer carry the same few short strings again and
// again (roles, a model's name, a finish reason); making a new string of
// each for every request is a good part of a request's allocations. A
// fast path reads such a field with TextOf, which gives one of the
// strings it expects, or a name an Interner remembers, without
// allocating.

// TextOf is Text, giving the entry of known equal to the value, if any,
// instead of a new string.
func TextOf(f *fastjson.Value, known []string) (string, bool) {
	if f.Type() != fastjson.TypeString {
		return "", false
	}
	b := f.GetStringBytes()
	for _, k := range known {
		if k == string(b) {
			return k, true
		}
	}
	return string(b), utf8.Valid(b)
}

// Interner remembers up to Max short strings (model names) and gives the
// remembered string for equal bytes. Its look-ups take no lock: the
// strings sit in a map that is replaced whole when one is added, which
// stops once Max are there, so strings that clients make up cannot grow
// it without bound. The zero value remembers nothing until Max is set.
type Interner struct {
	Max int

	mu sync.Mutex // serialises additions
	m  atomic.Pointer[map[string]string]
}

// maxInterned is the longest string an Interner remembers.
const maxInterned = 256

// Text is plainjson.Text through the interner.
func (in *Interner) Text(f *fastjson.Value) (string, bool) {
	if f.Type() != fastjson.TypeString {
		return "", false
	}
	b := f.GetStringBytes()
	if m := in.m.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s, true
		}
	}
	if !utf8.Valid(b) {
		return string(b), false
	}
	s := string(b)
	if len(s) <= maxInterned {
		in.add(s)
	}
	return s, true
}

func (in *Interner) add(s string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.m.Load()
	n := 0
	if old != nil {
		if _, ok := (*old)[s]; ok {
			return
		}
		n = len(*old)
	}
	if n >= in.Max {
		return
	}
	m := make(map[string]string, n+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	in.m.Store(&m)
}
