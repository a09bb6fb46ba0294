package api

import (
	"strings"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
	"github.com/sovra/sovra/internal/plainjson"
	"github.com/valyala/fastjson"
)

// Most chat requests are plain: a model, messages of a role and a text,
// whether to stream and a few sampling numbers. encoding/json spends a
// good share of a request's CPU on them (api.Message has its own
// UnmarshalJSON, which decodes each message twice); fastDecode reads
// these shapes with a pooled fastjson parser instead. It declines
// anything else, leaving it to encoding/json: keys other than the few it
// knows or not spelled exactly (encoding/json matches them ignoring
// case), a repeated key, null, a value of another type, content parts,
// numbers JSON or the field's type does not allow, odd escapes, control
// characters and invalid UTF-8. FuzzDecodeChatRequest holds the two paths
// to the same value.

var bodyParsers fastjson.ParserPool

// maxFastBody bounds the bodies read on the fast path: fastjson parses a
// copy of the body, which its pooled parser keeps, so a large body would
// cost a body's worth more memory than encoding/json spends on it, and
// stay held after.
const maxFastBody = 256 << 10

// fastDecode decodes a plain chat request body into v (an
// *api.ChatRequest or a *chatRequest, as encoding/json would); false,
// with v untouched, when the body is not plain.
func fastDecode(body []byte, v any) bool {
	switch v.(type) {
	case *api.ChatRequest, *chatRequest:
	default:
		return false
	}
	if len(body) > maxFastBody || !plainjson.Strict(body) {
		return false
	}
	p := bodyParsers.Get()
	defer bodyParsers.Put(p)
	root, err := p.ParseBytes(body)
	if err != nil || root.Type() != fastjson.TypeObject {
		return false
	}
	switch v := v.(type) {
	case *api.ChatRequest:
		var r api.ChatRequest
		if !fields(root.GetObject(), nativeKeys, func(k string, f *fastjson.Value) bool { return nativeField(&r, k, f) }) {
			return false
		}
		*v = r
	case *chatRequest:
		var r chatRequest
		if !fields(root.GetObject(), openaiKeys, func(k string, f *fastjson.Value) bool { return openaiField(&r, k, f) }) {
			return false
		}
		*v = r
	}
	return true
}

var (
	nativeKeys = []string{"model", "messages", "stream", "options"}
	openaiKeys = []string{"model", "messages", "stream", "stream_options", "temperature", "top_p",
		"max_tokens", "max_completion_tokens", "seed", "n", "presence_penalty", "frequency_penalty", "stop"}
	messageKeys      = []string{"role", "content"}
	streamOptionKeys = []string{"include_usage"}
)

// fields calls set for each key of o, passing the key as spelled in
// keys; false when a key is not there, repeats or set declines.
func fields(o *fastjson.Object, keys []string, set func(key string, f *fastjson.Value) bool) bool {
	ok, seen := true, uint64(0)
	o.Visit(func(k []byte, f *fastjson.Value) {
		if !ok {
			return
		}
		ok = false
		for i, key := range keys {
			if string(k) == key && seen&(1<<i) == 0 {
				seen |= 1 << i
				ok = set(key, f)
				break
			}
		}
	})
	return ok
}

func nativeField(r *api.ChatRequest, key string, f *fastjson.Value) bool {
	switch key {
	case "model":
		return modelName(&r.Model, f)
	case "messages":
		r.Messages = make([]api.Message, 0, len(f.GetArray()))
		return messages(f, func(role, content string, _ bool) {
			// api.Message's UnmarshalJSON lower-cases the role.
			r.Messages = append(r.Messages, api.Message{Role: strings.ToLower(role), Content: content})
		})
	case "stream":
		return boolPtr(&r.Stream, f)
	case "options":
		return options(&r.Options, f)
	}
	return false
}

func openaiField(r *chatRequest, key string, f *fastjson.Value) bool {
	switch key {
	case "model":
		return modelName(&r.Model, f)
	case "messages":
		r.Messages = make([]openai.Message, 0, len(f.GetArray()))
		return messages(f, func(role, content string, hasContent bool) {
			m := openai.Message{Role: role}
			if hasContent { // an absent content stays a nil any
				m.Content = content
			}
			r.Messages = append(r.Messages, m)
		})
	case "stream":
		return boolean(&r.Stream, f)
	case "stream_options":
		r.StreamOptions = &openai.StreamOptions{}
		return f.Type() == fastjson.TypeObject && fields(f.GetObject(), streamOptionKeys,
			func(_ string, f *fastjson.Value) bool { return boolean(&r.StreamOptions.IncludeUsage, f) })
	case "temperature":
		return floatPtr(&r.Temperature, f)
	case "top_p":
		return floatPtr(&r.TopP, f)
	case "presence_penalty":
		return floatPtr(&r.PresencePenalty, f)
	case "frequency_penalty":
		return floatPtr(&r.FrequencyPenalty, f)
	case "max_tokens":
		return intPtr(&r.MaxTokens, f)
	case "max_completion_tokens":
		return intPtr(&r.MaxCompletionTokens, f)
	case "seed":
		return intPtr(&r.Seed, f)
	case "n":
		return intPtr(&r.N, f)
	case "stop":
		return stop(&r.Stop, f)
	}
	return false
}

// messages calls add for each message of f, an array of objects with a
// role and a text content at most (hasContent false when it has none).
func messages(f *fastjson.Value, add func(role, content string, hasContent bool)) bool {
	if f.Type() != fastjson.TypeArray {
		return false
	}
	for _, m := range f.GetArray() {
		var role, content string
		hasContent := false
		if m.Type() != fastjson.TypeObject || !fields(m.GetObject(), messageKeys, func(k string, f *fastjson.Value) bool {
			if k == "role" {
				var ok bool
				role, ok = plainjson.TextOf(f, roles)
				return ok
			}
			hasContent = true
			return text(&content, f)
		}) {
			return false
		}
		add(role, content, hasContent)
	}
	return true
}

// options sets an options object of numbers, strings and booleans, as
// encoding/json decodes one into a map[string]any (numbers as float64; a
// repeated key's last value wins, as there).
func options(m *map[string]any, f *fastjson.Value) bool {
	if f.Type() != fastjson.TypeObject {
		return false
	}
	*m = map[string]any{}
	ok := true
	f.GetObject().Visit(func(k []byte, f *fastjson.Value) {
		if !ok {
			return
		}
		if ok = utf8.Valid(k); !ok {
			return
		}
		var v any
		switch f.Type() {
		case fastjson.TypeNumber:
			var x float64
			x, ok = plainjson.FloatValue(f)
			v = x
		case fastjson.TypeString:
			v, ok = plainjson.Text(f)
		case fastjson.TypeTrue, fastjson.TypeFalse:
			v = f.Type() == fastjson.TypeTrue
		default:
			ok = false
		}
		(*m)[string(k)] = v
	})
	return ok
}

// stop sets a stop string or list of strings, as encoding/json decodes
// one into an any.
func stop(v *any, f *fastjson.Value) bool {
	if f.Type() == fastjson.TypeString {
		s, ok := plainjson.Text(f)
		*v = s
		return ok
	}
	if f.Type() != fastjson.TypeArray {
		return false
	}
	list := []any{}
	for _, e := range f.GetArray() {
		s, ok := plainjson.Text(e)
		if !ok {
			return false
		}
		list = append(list, s)
	}
	*v = list
	return true
}

// roles are the message roles a request names (as they are spelled,
// lower case), and modelNames the model names requests name: strings
// the fast path gives without allocating.
var (
	roles      = []string{"system", "user", "assistant", "developer", "tool"}
	modelNames = plainjson.Interner{Max: 1024}
)

func modelName(s *string, f *fastjson.Value) (ok bool) {
	*s, ok = modelNames.Text(f)
	return ok
}

func text(s *string, f *fastjson.Value) (ok bool) {
	*s, ok = plainjson.Text(f)
	return ok
}

func boolean(b *bool, f *fastjson.Value) bool {
	*b = f.Type() == fastjson.TypeTrue
	return *b || f.Type() == fastjson.TypeFalse
}

func boolPtr(p **bool, f *fastjson.Value) bool {
	var b bool
	*p = &b
	return boolean(&b, f)
}

func floatPtr(p **float64, f *fastjson.Value) bool {
	x, ok := plainjson.FloatValue(f)
	*p = &x
	return ok
}

// intPtr sets an integer field, which encoding/json reads only from an
// integer literal within range.
func intPtr(p **int, f *fastjson.Value) bool {
	n, ok := plainjson.IntValue(f)
	x := int(n)
	*p = &x
	return ok && int64(x) == n
}
