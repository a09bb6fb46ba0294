package api

import (
	"context"
	"encoding/json"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
)

// The Ollama-native routes let Ollama clients point at sovra unchanged. They
// keep Ollama's conventions: streaming by default, NDJSON, {"error": "..."}.

func streaming(s *bool) bool { return s == nil || *s }

func ndjsonError(e *Error) []byte { return ndjsonFrame(inBandError(familyOllama, e)) }

func sendLine(send func([]byte) error, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return send(ndjsonFrame(b))
}

func (s *Server) ollamaChat(c *fiber.Ctx) error {
	var req api.ChatRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return invalidParam("model", "model is required")
	}
	ri := requestInfo(c)
	ri.model = req.Model
	if !streaming(req.Stream) {
		ctx, cancel := s.requestContext(c)
		defer cancel()
		var final api.ChatResponse
		if err := s.be.Chat(ctx, &req, func(r api.ChatResponse) error { final = r; return nil }); err != nil {
			return err
		}
		ri.promptTokens, ri.completionTokens = final.PromptEvalCount, final.EvalCount
		return c.JSON(final)
	}
	return s.serveStream(c, stream{
		contentType: "application/x-ndjson",
		fail:        ndjsonError,
		run: func(ctx context.Context, send func([]byte) error) error {
			return s.be.Chat(ctx, &req, func(r api.ChatResponse) error {
				if r.Done {
					ri.promptTokens, ri.completionTokens = r.PromptEvalCount, r.EvalCount
				}
				return sendLine(send, r)
			})
		},
	})
}

func (s *Server) ollamaGenerate(c *fiber.Ctx) error {
	var req api.GenerateRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return invalidParam("model", "model is required")
	}
	ri := requestInfo(c)
	ri.model = req.Model
	if !streaming(req.Stream) {
		ctx, cancel := s.requestContext(c)
		defer cancel()
		var final api.GenerateResponse
		if err := s.be.Generate(ctx, &req, func(r api.GenerateResponse) error { final = r; return nil }); err != nil {
			return err
		}
		ri.promptTokens, ri.completionTokens = final.PromptEvalCount, final.EvalCount
		return c.JSON(final)
	}
	return s.serveStream(c, stream{
		contentType: "application/x-ndjson",
		fail:        ndjsonError,
		run: func(ctx context.Context, send func([]byte) error) error {
			return s.be.Generate(ctx, &req, func(r api.GenerateResponse) error {
				if r.Done {
					ri.promptTokens, ri.completionTokens = r.PromptEvalCount, r.EvalCount
				}
				return sendLine(send, r)
			})
		},
	})
}

func (s *Server) ollamaEmbed(c *fiber.Ctx) error {
	var req api.EmbedRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return invalidParam("model", "model is required")
	}
	requestInfo(c).model = req.Model
	ctx, cancel := s.requestContext(c)
	defer cancel()
	resp, err := s.be.Embed(ctx, &req)
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

func (s *Server) ollamaTags(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext(c)
	defer cancel()
	resp, err := s.be.List(ctx)
	if err != nil {
		return err
	}
	if resp.Models == nil {
		resp.Models = []api.ListModelResponse{}
	}
	return c.JSON(resp)
}

func (s *Server) ollamaPS(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext(c)
	defer cancel()
	resp, err := s.be.ListRunning(ctx)
	if err != nil {
		return err
	}
	if resp.Models == nil {
		resp.Models = []api.ProcessModelResponse{}
	}
	return c.JSON(resp)
}

func (s *Server) ollamaShow(c *fiber.Ctx) error {
	var req api.ShowRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Model == "" {
		req.Model = req.Name
	}
	if req.Model == "" {
		return invalidParam("model", "model is required")
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	resp, err := s.be.Show(ctx, &req)
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

func (s *Server) ollamaVersion(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext(c)
	defer cancel()
	v, err := s.be.Version(ctx)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"version": v})
}
