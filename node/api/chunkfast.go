package api

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
)

// Most chunks of a streamed chat carry nothing but a piece of text. Those
// are written here by appending to one buffer, which costs a fraction of
// converting the message with openai.ToChunk and encoding it with
// encoding/json; every other chunk (tool calls, thinking, logprobs, the
// last one) takes that general path. FuzzTokenChunk and FuzzNativeLine hold
// the two to the same bytes.

// plainToken says whether r is a chunk of text only.
func plainToken(r api.ChatResponse) bool {
	return !r.Done && r.DoneReason == "" && len(r.Message.ToolCalls) == 0 &&
		r.Message.Thinking == "" && len(r.Logprobs) == 0
}

// appendTokenChunk appends the server-sent event of a text-only chunk.
func appendTokenChunk(dst []byte, id, model string, created int64, content string) []byte {
	dst = append(dst, `data: {"id":`...)
	dst = appendJSONString(dst, id)
	dst = append(dst, `,"object":"chat.completion.chunk","created":`...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	dst = appendJSONString(dst, model)
	dst = append(dst, `,"system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":`...)
	dst = appendJSONString(dst, content)
	return append(dst, "},\"finish_reason\":null}]}\n\n"...)
}

// tokenChunk is the event of a text-only chunk, sized to fit.
func tokenChunk(id string, r api.ChatResponse) []byte {
	n := 200 + len(id) + len(r.Model) + len(r.Message.Content)*6/5
	return appendTokenChunk(make([]byte, 0, n), id, r.Model, time.Now().Unix(), r.Message.Content)
}

// plainNativeChat says whether r, a message of Ollama's own chat API,
// carries text (and, on the last one, the reason and the counts) and
// nothing else that encoding/json would write.
func plainNativeChat(r api.ChatResponse) bool {
	m := r.Message
	// encoding/json refuses times it cannot write as RFC 3339.
	y := r.CreatedAt.Year()
	_, offset := r.CreatedAt.Zone()
	return len(m.ToolCalls) == 0 && m.Thinking == "" && m.Images == nil && m.ToolName == "" && m.ToolCallID == "" &&
		len(r.Logprobs) == 0 && r.RemoteModel == "" && r.RemoteHost == "" && r.DebugInfo == nil &&
		y >= 0 && y <= 9999 && offset > -24*3600 && offset < 24*3600
}

// nativeJSON encodes one message of Ollama's own API.
func nativeJSON(r any) ([]byte, error) {
	if c, ok := r.(api.ChatResponse); ok && plainNativeChat(c) {
		n := 300 + len(c.Model) + len(c.Message.Role) + len(c.Message.Content)*6/5
		return appendNativeChat(make([]byte, 0, n), c), nil
	}
	return json.Marshal(r)
}

// nativeLine encodes one line of an Ollama-native stream.
func nativeLine(r any) ([]byte, error) {
	b, err := nativeJSON(r)
	if err != nil {
		return nil, err
	}
	return ndjsonFrame(b), nil
}

// appendNativeChat appends a plain chat message, its fields in the order
// and with the omissions of api.ChatResponse's encoding.
func appendNativeChat(dst []byte, r api.ChatResponse) []byte {
	dst = append(dst, `{"model":`...)
	dst = appendJSONString(dst, r.Model)
	dst = append(dst, `,"created_at":"`...)
	dst = r.CreatedAt.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","message":{"role":`...)
	dst = appendJSONString(dst, r.Message.Role)
	dst = append(dst, `,"content":`...)
	dst = appendJSONString(dst, r.Message.Content)
	dst = append(dst, `},"done":`...)
	dst = strconv.AppendBool(dst, r.Done)
	if r.DoneReason != "" {
		dst = append(dst, `,"done_reason":`...)
		dst = appendJSONString(dst, r.DoneReason)
	}
	m := r.Metrics
	for _, f := range [...]struct {
		name string
		v    int64
	}{
		{`,"total_duration":`, int64(m.TotalDuration)},
		{`,"load_duration":`, int64(m.LoadDuration)},
		{`,"prompt_eval_count":`, int64(m.PromptEvalCount)},
		{`,"prompt_eval_duration":`, int64(m.PromptEvalDuration)},
		{`,"eval_count":`, int64(m.EvalCount)},
		{`,"eval_duration":`, int64(m.EvalDuration)},
	} {
		if f.v != 0 {
			dst = append(dst, f.name...)
			dst = strconv.AppendInt(dst, f.v, 10)
		}
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes it: control
// characters, the quote and the backslash escaped, <, > and & as \u00XX,
// U+2028 and U+2029 escaped, and invalid UTF-8 replaced by U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
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
