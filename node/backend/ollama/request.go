package ollama

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/jsonappend"
)

// Nearly every chat request sovra sends to Ollama is messages of text
// with a role, the model, stream, keep_alive and a few sampling options.
// encoding/json spends a few microseconds reflecting over api.ChatRequest
// for that; plainChatJSON appends the same bytes directly (FuzzChatRequest
// holds the two to the same output). Any other field, or an option of a
// type it does not write, leaves the request to encoding/json.

// encodeRequest is req's JSON body.
func encodeRequest(req any) ([]byte, error) {
	if cr, ok := req.(*api.ChatRequest); ok {
		if b, ok := plainChatJSON(cr); ok {
			return b, nil
		}
	}
	return json.Marshal(req)
}

// plainChatJSON encodes a chat request of plain text messages, or reports
// false for any other.
func plainChatJSON(r *api.ChatRequest) ([]byte, bool) {
	if len(r.Format) > 0 || len(r.Tools) > 0 || r.Think != nil || r.DebugRenderOnly || r.Logprobs || r.TopLogprobs != 0 {
		return nil, false
	}
	n := 128 + len(r.Model)
	for _, m := range r.Messages {
		if m.Thinking != "" || len(m.Images) > 0 || len(m.ToolCalls) > 0 || m.ToolName != "" || m.ToolCallID != "" {
			return nil, false
		}
		n += 32 + len(m.Role) + len(m.Content)*11/10
	}
	dst := make([]byte, 0, n+64*len(r.Options))
	dst = append(dst, `{"model":`...)
	dst = jsonappend.String(dst, r.Model)
	dst = append(dst, `,"messages":`...)
	if r.Messages == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, m := range r.Messages {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"role":`...)
			dst = jsonappend.String(dst, m.Role)
			dst = append(dst, `,"content":`...)
			dst = jsonappend.String(dst, m.Content)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if r.Stream != nil {
		dst = append(dst, `,"stream":`...)
		dst = strconv.AppendBool(dst, *r.Stream)
	}
	if r.KeepAlive != nil {
		dst = append(dst, `,"keep_alive":`...)
		dst = appendDuration(dst, r.KeepAlive)
	}
	dst = append(dst, `,"options":`...)
	dst, ok := appendOptions(dst, r.Options)
	if !ok {
		return nil, false
	}
	for _, f := range [...]struct {
		name string
		v    *bool
	}{{`,"truncate":`, r.Truncate}, {`,"shift":`, r.Shift}} {
		if f.v != nil {
			dst = append(dst, f.name...)
			dst = strconv.AppendBool(dst, *f.v)
		}
	}
	return append(dst, '}'), true
}

// appendDuration writes a keep_alive as api.Duration's MarshalJSON does.
func appendDuration(dst []byte, d *api.Duration) []byte {
	if d.Duration < 0 {
		return append(dst, "-1"...)
	}
	dst = append(dst, '"')
	dst = append(dst, d.Duration.String()...)
	return append(dst, '"')
}

// appendOptions writes the options map, its keys in order as
// encoding/json sorts them, or reports false when a value is of a type
// it leaves to encoding/json.
func appendOptions(dst []byte, opts map[string]any) ([]byte, bool) {
	if opts == nil {
		return append(dst, "null"...), true
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonappend.String(dst, k)
		dst = append(dst, ':')
		var ok bool
		if dst, ok = appendOption(dst, opts[k]); !ok {
			return nil, false
		}
	}
	return append(dst, '}'), true
}

// appendOption writes one option's value: a number, a bool, a string or
// a list of strings (stop sequences).
func appendOption(dst []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case float64:
		return jsonappend.Float64(dst, v)
	case int:
		return strconv.AppendInt(dst, int64(v), 10), true
	case bool:
		return strconv.AppendBool(dst, v), true
	case string:
		return jsonappend.String(dst, v), true
	case []string:
		if v == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, s := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonappend.String(dst, s)
		}
		return append(dst, ']'), true
	}
	return dst, false
}
