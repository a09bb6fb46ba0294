package api

import (
	"context"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

// The Ollama-native routes let Ollama clients point at sovra unchanged. They
// keep Ollama's conventions: streaming by default, NDJSON, {"error": "..."}.

func streaming(s *bool) bool { return s == nil || *s }

func ndjsonError(e *Error) []byte { return ndjsonFrame(inBandError(familyOllama, e)) }

// generation is one streaming backend call and how to read its messages.
type generation[R any] struct {
	model  string
	stream bool
	call   func(ctx context.Context, fn func(R) error) error
	// metrics returns the token counts of a message and whether it is the
	// final one.
	metrics func(R) (api.Metrics, bool)
}

func chatGeneration(be backend.Backend, req *api.ChatRequest) generation[api.ChatResponse] {
	return generation[api.ChatResponse]{
		model: req.Model, stream: streaming(req.Stream),
		call:    func(ctx context.Context, fn func(api.ChatResponse) error) error { return be.Chat(ctx, req, fn) },
		metrics: func(r api.ChatResponse) (api.Metrics, bool) { return r.Metrics, r.Done },
	}
}

// serveNative answers with Ollama's own format: one JSON object, or NDJSON
// lines when streaming.
func serveNative[R any](s *Server, c *fiber.Ctx, g generation[R]) error {
	if g.model == "" {
		return invalidParam("model", "model is required")
	}
	ri := requestInfo(c)
	ri.setModel(g.model)
	if !g.stream {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		b, err := nativeJSON(takeBody(c), final)
		if err != nil {
			return err
		}
		sendBody(c, b)
		return nil
	}
	return s.serveStream(c, stream{
		contentType: "application/x-ndjson",
		fail:        ndjsonError,
		run: func(ctx context.Context, send func([]byte) error) error {
			return g.call(ctx, func(r R) error {
				ri.count(g.metrics(r))
				b, err := nativeLine(r)
				if err != nil {
					return err
				}
				return send(b)
			})
		},
	})
}

// collect runs a non-streamed call to its final message, cancelling it if
// the client hangs up, and records the token counts.
func collect[R any](s *Server, c *fiber.Ctx, g generation[R]) (R, error) {
	var final R
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return final, err
	}
	defer cancel()
	err = g.call(ctx, func(r R) error { final = r; return nil })
	if err == nil {
		requestInfo(c).count(g.metrics(final))
	}
	return final, err
}

func (s *Server) ollamaChat(c *fiber.Ctx) error {
	var req api.ChatRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	return serveNative(s, c, chatGeneration(s.be, &req))
}

func (s *Server) ollamaGenerate(c *fiber.Ctx) error {
	var req api.GenerateRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	return serveNative(s, c, generateGeneration(s.be, &req))
}

func generateGeneration(be backend.Backend, req *api.GenerateRequest) generation[api.GenerateResponse] {
	return generation[api.GenerateResponse]{
		model: req.Model, stream: streaming(req.Stream),
		call:    func(ctx context.Context, fn func(api.GenerateResponse) error) error { return be.Generate(ctx, req, fn) },
		metrics: func(r api.GenerateResponse) (api.Metrics, bool) { return r.Metrics, r.Done },
	}
}

func (s *Server) ollamaEmbed(c *fiber.Ctx) error {
	var req api.EmbedRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return invalidParam("model", "model is required")
	}
	requestInfo(c).setModel(req.Model)
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := s.be.Embed(ctx, &req)
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

func (s *Server) ollamaTags(c *fiber.Ctx) error {
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
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
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
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
	if err := checkModelName(req.Model); err != nil {
		return err
	}
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := s.be.Show(ctx, &req)
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

func (s *Server) ollamaVersion(c *fiber.Ctx) error {
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
	defer cancel()
	v, err := s.be.Version(ctx)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"version": v})
}
