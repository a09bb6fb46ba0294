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
	if req.Model == "" {
		return invalidParam("model", "model: field required")
	}
	if req.MaxTokens <= 0 {
		return invalidParam("max_tokens", "max_tokens: must be at least 1")
	}
	if len(req.Messages) == 0 {
		return invalidParam("messages", "messages: at least one message is required")
	}
	chat, err := anthropic.FromMessagesRequest(req)
	if err != nil {
		return invalidParam("messages", "%s", err.Error())
	}
	ri := requestInfo(c)
	ri.model = req.Model
	id := s.ids.next("msg")
	if !req.Stream {
		ctx, cancel := s.requestContext(c)
		defer cancel()
		var final api.ChatResponse
		if err := s.be.Chat(ctx, chat, func(r api.ChatResponse) error { final = r; return nil }); err != nil {
			return err
		}
		ri.promptTokens, ri.completionTokens = final.PromptEvalCount, final.EvalCount
		return c.JSON(anthropic.ToMessagesResponse(id, final))
	}
	conv := anthropic.NewStreamConverter(id, req.Model, anthropic.EstimateInputTokens(req))
	return s.serveStream(c, stream{
		contentType: "text/event-stream",
		fail:        func(e *Error) []byte { return sseFrame("error", inBandError(familyAnthropic, e)) },
		run: func(ctx context.Context, send func([]byte) error) error {
			return s.be.Chat(ctx, chat, func(r api.ChatResponse) error {
				if r.Done {
					ri.promptTokens, ri.completionTokens = r.PromptEvalCount, r.EvalCount
				}
				for _, ev := range conv.Process(r) {
					if err := sendEvent(send, ev.Event, ev.Data); err != nil {
						return err
					}
				}
				return nil
			})
		},
	})
}

func sendEvent(send func([]byte) error, event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return send(sseFrame(event, b))
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
	ri := requestInfo(c)
	ri.model = req.Model
	respID, itemID := s.ids.next("resp"), s.ids.next("msg")
	if !streamed {
		ctx, cancel := s.requestContext(c)
		defer cancel()
		var final api.ChatResponse
		if err := s.be.Chat(ctx, chat, func(r api.ChatResponse) error { final = r; return nil }); err != nil {
			return err
		}
		ri.promptTokens, ri.completionTokens = final.PromptEvalCount, final.EvalCount
		out := openai.ToResponse(req.Model, respID, itemID, final, req)
		done := time.Now().Unix()
		out.CompletedAt = &done
		return c.JSON(out)
	}
	conv := openai.NewResponsesStreamConverter(respID, itemID, req.Model, req)
	return s.serveStream(c, stream{
		contentType: "text/event-stream",
		fail: func(e *Error) []byte {
			b, _ := json.Marshal(map[string]any{"type": "error", "code": e.Code, "message": e.Message, "param": nil, "sequence_number": 0})
			return sseFrame("error", b)
		},
		run: func(ctx context.Context, send func([]byte) error) error {
			return s.be.Chat(ctx, chat, func(r api.ChatResponse) error {
				if r.Done {
					ri.promptTokens, ri.completionTokens = r.PromptEvalCount, r.EvalCount
				}
				for _, ev := range conv.Process(r) {
					if err := sendEvent(send, ev.Event, ev.Data); err != nil {
						return err
					}
				}
				return nil
			})
		},
	})
}
