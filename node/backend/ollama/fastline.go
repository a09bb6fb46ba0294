package ollama

import (
	"strings"
	"time"
	"unsafe"

	"github.com/ollama/ollama/api"
	"github.com/sovra/sovra/internal/plainjson"
	"github.com/valyala/fastjson"
)

// Most lines of a chat answer are one token: model, time, the message's
// role and content (or thinking), done false; the last adds why it ended
// and the metrics (and, for a non-streamed answer, holds the whole text).
// encoding/json spends about 2.3 µs and 14 allocations on a token line
// (api.Message has its own UnmarshalJSON, which decodes twice); chatLine
// reads these shapes with a pooled fastjson parser instead, in about a
// fifth of the time. Any other shape (tool calls, images, logprobs, an
// error, unknown or oddly cased keys, nulls, invalid UTF-8) is left to
// encoding/json, so what a line means never depends on the path: the
// fuzz test FuzzChatLine holds the two to the same result.

var lineParsers fastjson.ParserPool

// Strings an answer's lines repeat, which chatLine gives without
// allocating: the model names Ollama answers with, its roles and the
// reasons a generation ends.
var (
	modelNames  = plainjson.Interner{Max: 1024}
	roles       = []string{"assistant", "user", "system", "tool"}
	doneReasons = []string{"stop", "length", "load", "unload"}
)

// chatLine decodes a token line or the final line of a chat answer; ok
// is false when the line is not of that shape and must be decoded in full.
func chatLine(b []byte) (r api.ChatResponse, ok bool) {
	if !plainjson.Strict(b) {
		return r, false
	}
	p := lineParsers.Get()
	defer lineParsers.Put(p)
	v, err := p.ParseBytes(b)
	if err != nil || v.Type() != fastjson.TypeObject {
		return r, false
	}
	ok = true
	v.GetObject().Visit(func(k []byte, f *fastjson.Value) {
		if ok {
			ok = chatField(&r, string(k), f)
		}
	})
	return r, ok
}

// chatField sets one top-level field of a token line.
func chatField(r *api.ChatResponse, key string, f *fastjson.Value) bool {
	switch key {
	case "model":
		s, ok := modelNames.Text(f)
		r.Model = s
		return ok
	case "created_at":
		if f.Type() != fastjson.TypeString {
			return false
		}
		b := f.GetStringBytes()
		// Parsed from the line's bytes in place: the error, which would
		// keep them, is dropped.
		t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(b), len(b)))
		r.CreatedAt = t
		return err == nil
	case "done":
		if f.Type() != fastjson.TypeFalse && f.Type() != fastjson.TypeTrue {
			return false
		}
		r.Done = f.Type() == fastjson.TypeTrue
		return true
	case "message":
		return f.Type() == fastjson.TypeObject && messageFields(&r.Message, f.GetObject())
	case "done_reason":
		s, ok := plainjson.TextOf(f, doneReasons)
		r.DoneReason = s
		return ok
	}
	return metricField(&r.Metrics, key, f)
}

// metricField sets one of the final line's metrics: integers, the
// durations in nanoseconds.
func metricField(m *api.Metrics, key string, f *fastjson.Value) bool {
	n, ok := plainjson.IntValue(f)
	if !ok {
		return false
	}
	switch key {
	case "total_duration":
		m.TotalDuration = time.Duration(n)
	case "load_duration":
		m.LoadDuration = time.Duration(n)
	case "prompt_eval_duration":
		m.PromptEvalDuration = time.Duration(n)
	case "eval_duration":
		m.EvalDuration = time.Duration(n)
	case "prompt_eval_count":
		m.PromptEvalCount = int(n)
	case "eval_count":
		m.EvalCount = int(n)
	default:
		return false
	}
	return true
}

// messageFields sets the role, content and thinking of a token line's
// message; any other field makes the line one to decode in full.
func messageFields(m *api.Message, o *fastjson.Object) bool {
	ok := true
	o.Visit(func(k []byte, f *fastjson.Value) {
		if !ok {
			return
		}
		switch string(k) {
		case "role":
			m.Role, ok = plainjson.TextOf(f, roles)
			m.Role = strings.ToLower(m.Role) // as api.Message's UnmarshalJSON does
		case "content":
			m.Content, ok = plainjson.Text(f)
		case "thinking":
			m.Thinking, ok = plainjson.Text(f)
		default:
			ok = false
		}
	})
	return ok
}

// decodeChatLine decodes one line of a chat answer: token and final
// lines on the fast path, anything else in full.
func decodeChatLine(b []byte) (api.ChatResponse, error) {
	if r, ok := chatLine(b); ok {
		return r, nil
	}
	return decodeLine[api.ChatResponse](b)
}
