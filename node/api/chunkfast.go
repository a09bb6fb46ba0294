package api

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
)

// Most chunks of a streamed chat carry nothing but a piece of text. Those
// are written here by appending to one buffer, which costs a fraction of
// converting the message with openai.ToChunk and encoding it with
// encoding/json; every other chunk (tool calls, thinking, logprobs, the
// last one) takes that general path. FuzzTokenChunk holds the two to the
// same bytes.

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
