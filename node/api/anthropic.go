package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/anthropic"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// messages serves the Anthropic Messages API; its errors use Anthropic's
// error format, which is what its clients parse.
func (s *Server) messages(c *fiber.Ctx) error {
	var req anthropic.MessagesRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	chat, err := messagesToOllama(&req, s.tokenLimit())
	if err != nil {
		return err
	}
	requestInfo(c).setModel(req.Model)
	id := s.ids.next("msg_")
	g := chatGeneration(s.be, chat)
	if !req.Stream {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		return c.JSON(toMessage(anthropic.ToMessagesResponse(id, final)))
	}
	st := &anthropicStream{conv: anthropic.NewStreamConverter(id, req.Model, anthropic.EstimateInputTokens(req))}
	return s.serveEvents(c, g, func(e *Error) []byte { return sseFrame("error", inBandError(familyAnthropic, e)) }, st.process)
}

// messagesToOllama checks a Messages request, asking for at most limit
// tokens (0: any), and translates it.
func messagesToOllama(req *anthropic.MessagesRequest, limit int) (*api.ChatRequest, error) {
	if err := checkMessagesRequest(req, limit); err != nil {
		return nil, err
	}
	chat, err := anthropic.FromMessagesRequest(*req)
	if err != nil {
		return nil, invalidParam("messages", "%s", err.Error())
	}
	if !hasTurn(chat.Messages) {
		// The translator leaves out blocks of types it does not know: a
		// request of nothing else would reach Ollama without a turn.
		return nil, invalidParam("messages", "messages: no message has content this server reads (text, image, tool_use, tool_result or thinking blocks)")
	}
	return chat, nil
}

// hasTurn reports whether a translated chat has a message beside its
// system prompt: Ollama takes a chat of none as a request to load the
// model, and answers nothing.
func hasTurn(msgs []api.Message) bool {
	return slices.ContainsFunc(msgs, func(m api.Message) bool { return m.Role != "system" })
}

// checkMessagesRequest checks what Anthropic's API checks and Ollama's
// translator does not. Anthropic's error format has no param: the
// messages start with the parameter's path, as Anthropic's do.
func checkMessagesRequest(req *anthropic.MessagesRequest, limit int) error {
	switch {
	case req.Model == "":
		return invalidParam("model", "model: field required")
	case req.MaxTokens <= 0:
		return invalidParam("max_tokens", "max_tokens: must be at least 1")
	case limit > 0 && req.MaxTokens > limit:
		return invalidParam("max_tokens", "max_tokens: %d is too large; the models of this cluster are served with a context of %d tokens, prompt included", req.MaxTokens, limit)
	case len(req.Messages) == 0:
		return invalidParam("messages", "messages: at least one message is required")
	}
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return invalidParam(indexed("messages", i, "role"), "messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		if err := checkBlocks(i, m.Content); err != nil {
			return err
		}
	}
	return checkAnthropicSampling(req)
}

// checkBlocks accepts a message's content as Anthropic does: a string or
// a list of content blocks, each an object with a type.
func checkBlocks(i int, content any) error {
	switch c := content.(type) {
	case string:
		return nil
	case []any:
		for j, b := range c {
			if m, ok := b.(map[string]any); !ok || !hasType(m) {
				return invalidParam(indexed("messages", i, "content"), "messages.%d.content.%d: Input should be an object with a type", i, j)
			}
		}
		return nil
	}
	return invalidParam(indexed("messages", i, "content"), "messages.%d.content: Input should be a valid string or list of content blocks", i)
}

func hasType(block map[string]any) bool {
	_, ok := block["type"].(string)
	return ok
}

// checkAnthropicSampling checks the sampling parameters' ranges as
// Anthropic's API does.
func checkAnthropicSampling(req *anthropic.MessagesRequest) error {
	for _, p := range []struct {
		name string
		v    *float64
	}{{"temperature", req.Temperature}, {"top_p", req.TopP}} {
		if p.v != nil && !(*p.v >= 0 && *p.v <= 1) {
			return invalidParam(p.name, "%s: Input should be between 0 and 1", p.name)
		}
	}
	if req.TopK != nil && *req.TopK < 0 {
		return invalidParam("top_k", "top_k: Input should be greater than or equal to 0")
	}
	return nil
}

// responsesRequest is the Responses API request with the fields that need
// stored responses, which this server does not keep.
type responsesRequest struct {
	openai.ResponsesRequest
	Store              *bool   `json:"store"`
	PreviousResponseID *string `json:"previous_response_id"`
}

// validate refuses what a stateless server cannot do rather than drop it:
// a conversation continued by reference would silently lose its history.
func (r *responsesRequest) validate(limit int) error {
	const stateless = "this server does not store responses; send the whole conversation in input instead"
	switch {
	case r.Model == "":
		return invalidParam("model", "you must provide a model parameter")
	case r.PreviousResponseID != nil:
		return unsupportedParam("previous_response_id", "previous_response_id is not supported: "+stateless)
	case r.Store != nil && *r.Store:
		return unsupportedParam("store", "store: true is not supported: "+stateless+" (send store: false or leave it out)")
	case !isNull(r.Conversation):
		return unsupportedParam("conversation", "conversation is not supported: "+stateless)
	case r.Background:
		return unsupportedParam("background", "background: true is not supported; stream the response instead")
	}
	if err := checkSampling(r.Temperature, r.TopP, nil, nil); err != nil {
		return err
	}
	if f := r.textFormat(); f != nil && f.Type == "json_schema" {
		if err := checkSchema("text.format.schema", f.Schema); err != nil {
			return err
		}
	}
	return checkTokens(limit, tokenParam{"max_output_tokens", r.MaxOutputTokens})
}

// toOllama checks the request, asking for at most limit tokens (0: any),
// and translates it.
func (r *responsesRequest) toOllama(limit int) (*api.ChatRequest, error) {
	if err := r.validate(limit); err != nil {
		return nil, err
	}
	chat, err := openai.FromResponsesRequest(r.ResponsesRequest)
	if err != nil {
		return nil, invalidParam("input", "%s", err.Error())
	}
	if len(chat.Messages) == 0 {
		return nil, invalidParam("input", "input is required: a string or an array of input items")
	}
	for i, m := range chat.Messages {
		switch m.Role {
		case "developer":
			chat.Messages[i].Role = "system"
		case "system", "user", "assistant", "tool":
		default:
			return nil, invalidParam("input", "invalid role %q in input: want user, assistant, system or developer", cut(m.Role))
		}
	}
	streamed := r.Stream != nil && *r.Stream
	chat.Stream = &streamed
	return chat, nil
}

func (r *responsesRequest) textFormat() *openai.ResponsesTextFormat {
	if r.Text == nil {
		return nil
	}
	return r.Text.Format
}

// responses serves the OpenAI Responses API, statelessly.
func (s *Server) responses(c *fiber.Ctx) error {
	var req responsesRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	chat, err := req.toOllama(s.tokenLimit())
	if err != nil {
		return err
	}
	streamed := *chat.Stream
	requestInfo(c).setModel(req.Model)
	respID, itemID := s.ids.next("resp_"), s.ids.next("msg_")
	g := chatGeneration(s.be, chat)
	if !streamed {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		out := openai.ToResponse(req.Model, respID, itemID, final, req.ResponsesRequest)
		done := time.Now().Unix()
		out.CompletedAt = &done
		return c.JSON(out)
	}
	conv := openai.NewResponsesStreamConverter(respID, itemID, req.Model, req.ResponsesRequest)
	fail := func(e *Error) []byte {
		b, _ := json.Marshal(map[string]any{"type": "error", "code": e.Code, "message": e.Message, "param": nil, "sequence_number": 0})
		return sseFrame("error", b)
	}
	return s.serveEvents(c, g, fail, func(r api.ChatResponse) []namedEvent { return asEvents(conv.Process(r)) })
}

// storedResponse answers GET and DELETE /v1/responses/{id}: no response
// is ever stored.
func (s *Server) storedResponse(c *fiber.Ctx) error {
	return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found",
		Message: fmt.Sprintf("No response with id '%s' is stored: this server does not store responses.", cut(c.Params("*")))}
}

// namedEvent is one server-sent event with an event name; the Anthropic
// and Responses converters produce events of this shape.
type namedEvent struct {
	Event string
	Data  any
}

func asEvents[E ~struct {
	Event string
	Data  any
}](evs []E) []namedEvent {
	out := make([]namedEvent, len(evs))
	for i, e := range evs {
		out[i] = namedEvent(e)
	}
	return out
}

// serveEvents streams a chat as named server-sent events made by convert.
func (s *Server) serveEvents(c *fiber.Ctx, g generation[api.ChatResponse], fail func(*Error) []byte, convert func(api.ChatResponse) []namedEvent) error {
	ri := requestInfo(c)
	return s.serveStream(c, stream{
		contentType: "text/event-stream",
		fail:        fail,
		run: func(ctx context.Context, send func([]byte) error) error {
			return g.call(ctx, func(r api.ChatResponse) error {
				ri.count(g.metrics(r))
				for _, ev := range convert(r) {
					b, err := json.Marshal(ev.Data)
					if err != nil {
						return err
					}
					if err := send(sseFrame(ev.Event, b)); err != nil {
						return err
					}
				}
				return nil
			})
		},
	})
}
