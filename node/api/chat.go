package api

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// chatRequest is the OpenAI chat request with the fields Ollama's translator
// does not know about.
type chatRequest struct {
	openai.ChatCompletionRequest
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	N                   *int            `json:"n"`
	LogitBias           json.RawMessage `json:"logit_bias"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
}

// chatMessage adds reasoning_content, the field DeepSeek's API uses for the
// thinking and which clients moving from it read.
type chatMessage struct {
	openai.Message
	ReasoningContent string `json:"reasoning_content,omitempty"`
}

type chatChoice struct {
	Index        int                    `json:"index"`
	Message      chatMessage            `json:"message"`
	FinishReason *string                `json:"finish_reason"`
	Logprobs     *openai.ChoiceLogprobs `json:"logprobs"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	Usage             openai.Usage `json:"usage"`
}

type chunkChoice struct {
	Index        int                    `json:"index"`
	Delta        chatMessage            `json:"delta"`
	FinishReason *string                `json:"finish_reason"`
	Logprobs     *openai.ChoiceLogprobs `json:"logprobs,omitempty"`
}

type chatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint"`
	Choices           []chunkChoice `json:"choices"`
	Usage             *openai.Usage `json:"usage,omitempty"`
}

func (s *Server) chatCompletions(c *fiber.Ctx) error {
	var req chatRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	oreq, err := req.toOllama(s.tokenLimit())
	if err != nil {
		return err
	}
	requestInfo(c).setModel(req.Model)
	id := s.ids.next("chatcmpl-")
	g := chatGeneration(s.be, oreq)
	if !req.Stream {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		b, err := s.completionJSON(takeBody(c), id, final)
		if err != nil {
			return err
		}
		sendBody(c, b)
		return nil
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	ri := requestInfo(c)
	return s.serveStream(c, stream{
		contentType: "text/event-stream",
		fail:        func(e *Error) []byte { return sseFrame("", inBandError(familyOpenAI, e)) },
		run: func(ctx context.Context, send func([]byte) error) error {
			cs := chunkState{id: id, calls: &toolCallIDs{ids: s.ids}}
			return g.call(ctx, func(r api.ChatResponse) error {
				ri.count(g.metrics(r))
				return cs.send(r, includeUsage, send)
			})
		},
	})
}

// chunkState carries what one streamed chat needs between chunks.
type chunkState struct {
	id       string
	toolSent bool
	calls    *toolCallIDs
}

func (cs *chunkState) send(r api.ChatResponse, includeUsage bool, send func([]byte) error) error {
	if plainToken(r) {
		return send(tokenChunk(cs.id, r))
	}
	oc := openai.ToChunk(cs.id, r, cs.toolSent)
	ch := chatChunk{ID: oc.Id, Object: oc.Object, Created: oc.Created, Model: oc.Model, SystemFingerprint: oc.SystemFingerprint}
	for _, c := range oc.Choices {
		cs.calls.fill(c.Delta.ToolCalls)
		if len(c.Delta.ToolCalls) > 0 {
			cs.toolSent = true
		}
		ch.Choices = append(ch.Choices, chunkChoice{Index: c.Index, Delta: withReasoning(c.Delta), FinishReason: c.FinishReason, Logprobs: c.Logprobs})
	}
	if err := sendJSON(send, ch); err != nil {
		return err
	}
	if !r.Done {
		return nil
	}
	if includeUsage {
		u := openai.ToUsage(r)
		ch.Usage, ch.Choices = &u, []chunkChoice{}
		if err := sendJSON(send, ch); err != nil {
			return err
		}
	}
	return send(sseDone)
}

func sendJSON(send func([]byte) error, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return send(sseFrame("", b))
}

func (s *Server) toCompletion(id string, r api.ChatResponse) chatCompletion {
	oc := openai.ToChatCompletion(id, r)
	calls := &toolCallIDs{ids: s.ids}
	cc := chatCompletion{ID: oc.Id, Object: oc.Object, Created: oc.Created, Model: oc.Model, SystemFingerprint: oc.SystemFingerprint, Usage: oc.Usage}
	for _, c := range oc.Choices {
		calls.fill(c.Message.ToolCalls)
		m := withReasoning(c.Message)
		if len(m.ToolCalls) > 0 && m.Content == "" {
			m.Content = nil
		}
		cc.Choices = append(cc.Choices, chatChoice{Index: c.Index, Message: m, FinishReason: c.FinishReason, Logprobs: c.Logprobs})
	}
	return cc
}

func withReasoning(m openai.Message) chatMessage {
	return chatMessage{Message: m, ReasoningContent: m.Reasoning}
}

// toolCallIDs gives every tool call an id and a distinct index, which the
// OpenAI SDKs need to tell calls apart; Ollama leaves both to the model.
type toolCallIDs struct {
	ids  *idSource
	sent int
}

func (t *toolCallIDs) fill(calls []openai.ToolCall) {
	for i := range calls {
		if calls[i].ID == "" {
			calls[i].ID = t.ids.next("call_")
		}
		calls[i].Index = t.sent
		t.sent++
	}
}

var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

var reasoningEfforts = map[string]string{"minimal": "low", "low": "low", "medium": "medium", "high": "high", "none": "none"}

// toOllama checks the request, asking for at most limit tokens (0: any),
// and translates it.
func (r *chatRequest) toOllama(limit int) (*api.ChatRequest, error) {
	if err := r.validate(limit); err != nil {
		return nil, err
	}
	r.prepare()
	out, ok := plainChat(&r.ChatCompletionRequest)
	if !ok {
		var err error
		if out, err = openai.FromChatRequest(r.ChatCompletionRequest); err != nil {
			param := "messages"
			if strings.Contains(err.Error(), "reasoning") {
				param = "reasoning_effort"
			}
			return nil, invalidParam(param, "%s", err.Error())
		}
	}
	if len(out.Messages) == 0 {
		return nil, invalidParam("messages", "no message has content: an empty array of content parts is not a message")
	}
	return out, nil
}

// prepare brings a checked request to what FromChatRequest reads: a
// max_completion_tokens as max_tokens, a developer message as a system
// one.
func (r *chatRequest) prepare() {
	if r.MaxTokens == nil && r.MaxCompletionTokens != nil {
		r.MaxTokens = r.MaxCompletionTokens
	}
	for i := range r.Messages {
		if r.Messages[i].Role == "developer" {
			r.Messages[i].Role = "system"
		}
	}
}

// checkContent accepts a message's content as OpenAI does: a string, an
// array of content parts, or nothing beside tool calls.
func checkContent(i int, m openai.Message) error {
	switch m.Content.(type) {
	case string, []any:
		return nil
	case nil:
		if len(m.ToolCalls) > 0 {
			return nil
		}
		return invalidParam(indexed("messages", i, "content"), "messages[%d].content is required (a string or an array of content parts) unless the message has tool_calls", i)
	}
	return invalidParam(indexed("messages", i, "content"), "messages[%d].content must be a string or an array of content parts", i)
}

func (r *chatRequest) validate(limit int) error {
	if r.Model == "" {
		return invalidParam("model", "you must provide a model parameter")
	}
	if len(r.Messages) == 0 {
		return invalidParam("messages", "messages must be a non-empty array")
	}
	for i, m := range r.Messages {
		if !chatRoles[m.Role] {
			return invalidParam(indexed("messages", i, "role"), "invalid role %q: want system, developer, user, assistant or tool", cut(m.Role))
		}
		if err := checkContent(i, m); err != nil {
			return err
		}
	}
	if err := checkSampling(r.Temperature, r.TopP, r.FrequencyPenalty, r.PresencePenalty); err != nil {
		return err
	}
	if err := checkStop(r.Stop); err != nil {
		return err
	}
	if r.N != nil && *r.N != 1 {
		return invalidParam("n", "only n=1 is supported")
	}
	if err := checkTokens(limit, tokenParam{"max_tokens", r.MaxTokens}, tokenParam{"max_completion_tokens", r.MaxCompletionTokens}); err != nil {
		return err
	}
	if r.TopLogprobs < 0 || r.TopLogprobs > 20 {
		return invalidParam("top_logprobs", "top_logprobs must be between 0 and 20")
	}
	if err := r.checkShapes(); err != nil {
		return err
	}
	return r.normalizeEffort()
}

// checkShapes checks the parameters that carry objects: the response
// format, the logit bias, the tools and the tool choice.
func (r *chatRequest) checkShapes() error {
	if err := checkResponseFormat(r.ResponseFormat); err != nil {
		return err
	}
	if err := checkLogitBias(r.LogitBias); err != nil {
		return err
	}
	if err := checkTools(r.Tools); err != nil {
		return err
	}
	return checkToolChoice(r.ToolChoice, r.Tools)
}

func (r *chatRequest) normalizeEffort() error {
	for _, p := range []*string{r.ReasoningEffort, reasoningOf(r.Reasoning)} {
		if p == nil || *p == "" {
			continue
		}
		v, ok := reasoningEfforts[*p]
		if !ok {
			return invalidParam("reasoning_effort", "invalid reasoning_effort %q: want none, minimal, low, medium or high", cut(*p))
		}
		*p = v
	}
	return nil
}

func reasoningOf(r *openai.Reasoning) *string {
	if r == nil {
		return nil
	}
	return &r.Effort
}
