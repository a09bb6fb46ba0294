package api

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/jsonappend"
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
	dst = jsonappend.String(dst, id)
	dst = append(dst, `,"object":"chat.completion.chunk","created":`...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonappend.String(dst, model)
	dst = append(dst, `,"system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":`...)
	dst = jsonappend.String(dst, content)
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
func nativeJSON(dst []byte, r any) ([]byte, error) {
	if c, ok := r.(api.ChatResponse); ok && plainNativeChat(c) {
		n := 300 + len(c.Model) + len(c.Message.Role) + len(c.Message.Content)*6/5
		return appendNativeChat(slices.Grow(dst, n), c), nil
	}
	b, err := json.Marshal(r)
	return append(dst, b...), err
}

// nativeLine encodes one line of an Ollama-native stream.
func nativeLine(r any) ([]byte, error) {
	b, err := nativeJSON(nil, r)
	if err != nil {
		return nil, err
	}
	return ndjsonFrame(b), nil
}

// appendNativeChat appends a plain chat message, its fields in the order
// and with the omissions of api.ChatResponse's encoding.
func appendNativeChat(dst []byte, r api.ChatResponse) []byte {
	dst = append(dst, `{"model":`...)
	dst = jsonappend.String(dst, r.Model)
	dst = append(dst, `,"created_at":"`...)
	dst = r.CreatedAt.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","message":{"role":`...)
	dst = jsonappend.String(dst, r.Message.Role)
	dst = append(dst, `,"content":`...)
	dst = jsonappend.String(dst, r.Message.Content)
	dst = append(dst, `},"done":`...)
	dst = strconv.AppendBool(dst, r.Done)
	if r.DoneReason != "" {
		dst = append(dst, `,"done_reason":`...)
		dst = jsonappend.String(dst, r.DoneReason)
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

// plainCompletion says whether r, the whole answer of a chat, is text
// only: its completion object then carries nothing appendCompletion does
// not write.
func plainCompletion(r api.ChatResponse) bool {
	return len(r.Message.ToolCalls) == 0 && r.Message.Thinking == "" && len(r.Logprobs) == 0
}

// appendCompletion appends the chat.completion object of a text-only
// answer, field for field as encoding/json writes a chatCompletion.
func appendCompletion(dst []byte, id string, r api.ChatResponse) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonappend.String(dst, id)
	dst = append(dst, `,"object":"chat.completion","created":`...)
	dst = strconv.AppendInt(dst, r.CreatedAt.Unix(), 10)
	dst = append(dst, `,"model":`...)
	dst = jsonappend.String(dst, r.Model)
	dst = append(dst, `,"system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":`...)
	dst = jsonappend.String(dst, r.Message.Role)
	dst = append(dst, `,"content":`...)
	dst = jsonappend.String(dst, r.Message.Content)
	dst = append(dst, `},"finish_reason":`...)
	if r.DoneReason == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonappend.String(dst, r.DoneReason)
	}
	m := r.Metrics
	dst = append(dst, `,"logprobs":null}],"usage":{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(m.PromptEvalCount), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(m.EvalCount), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(m.PromptEvalCount+m.EvalCount), 10)
	return append(dst, "}}"...)
}

// completionJSON is the body of a non-streamed chat answer.
func (s *Server) completionJSON(dst []byte, id string, r api.ChatResponse) ([]byte, error) {
	if plainCompletion(r) {
		n := 400 + len(id) + len(r.Model) + len(r.Message.Content)*11/10
		return appendCompletion(slices.Grow(dst, n), id, r), nil
	}
	b, err := json.Marshal(s.toCompletion(id, r))
	return append(dst, b...), err
}
