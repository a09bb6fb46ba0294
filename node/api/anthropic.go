package api

import (
	"context"
	"encoding/json"
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
	switch {
	case req.Model == "":
		return invalidParam("model", "model: field required")
	case req.MaxTokens <= 0:
		return invalidParam("max_tokens", "max_tokens: must be at least 1")
	case len(req.Messages) == 0:
		return invalidParam("messages", "messages: at least one message is required")
	}
	chat, err := anthropic.FromMessagesRequest(req)
	if err != nil {
		return invalidParam("messages", "%s", err.Error())
	}
	requestInfo(c).setModel(req.Model)
	id := s.ids.next("msg")
	g := chatGeneration(s.be, chat)
	if !req.Stream {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		return c.JSON(anthropic.ToMessagesResponse(id, final))
	}
	conv := anthropic.NewStreamConverter(id, req.Model, anthropic.EstimateInputTokens(req))
	return s.serveEvents(c, g, func(e *Error) []byte { return sseFrame("error", inBandError(familyAnthropic, e)) },
		func(r api.ChatResponse) []namedEvent { return asEvents(conv.Process(r)) })
}

// responses serves the OpenAI Responses API (stateless: no stored
// conversations).
func (s *Server) responses(c *fiber.Ctx) error {
	var req openai.ResponsesRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return invalidParam("model", "you must provide a model parameter")
	}
	if err := positive("max_output_tokens", req.MaxOutputTokens); err != nil {
		return err
	}
	chat, err := openai.FromResponsesRequest(req)
	if err != nil {
		return invalidParam("input", "%s", err.Error())
	}
	streamed := req.Stream != nil && *req.Stream
	chat.Stream = &streamed
	requestInfo(c).setModel(req.Model)
	respID, itemID := s.ids.next("resp"), s.ids.next("msg")
	g := chatGeneration(s.be, chat)
	if !streamed {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		out := openai.ToResponse(req.Model, respID, itemID, final, req)
		done := time.Now().Unix()
		out.CompletedAt = &done
		return c.JSON(out)
	}
	conv := openai.NewResponsesStreamConverter(respID, itemID, req.Model, req)
	fail := func(e *Error) []byte {
		b, _ := json.Marshal(map[string]any{"type": "error", "code": e.Code, "message": e.Message, "param": nil, "sequence_number": 0})
		return sseFrame("error", b)
	}
	return s.serveEvents(c, g, fail, func(r api.ChatResponse) []namedEvent { return asEvents(conv.Process(r)) })
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
