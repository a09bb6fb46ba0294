package api

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"

	"github.com/sovra/sovra/node/backend"
)

// completionRequest accepts a prompt given as a string or as an array holding
// one string, as OpenAI clients send either.
type completionRequest struct {
	openai.CompletionRequest
	Prompt any  `json:"prompt"`
	N      *int `json:"n"`
}

func (r *completionRequest) toOllama(limit int) (api.GenerateRequest, error) {
	if r.Model == "" {
		return api.GenerateRequest{}, invalidParam("model", "you must provide a model parameter")
	}
	switch p := r.Prompt.(type) {
	case string:
		r.CompletionRequest.Prompt = p
	case []any:
		s, ok := singleString(p)
		if !ok {
			return api.GenerateRequest{}, invalidParam("prompt", "prompt must be a string or an array of one string")
		}
		r.CompletionRequest.Prompt = s
	case nil:
		return api.GenerateRequest{}, invalidParam("prompt", "you must provide a prompt")
	default:
		return api.GenerateRequest{}, invalidParam("prompt", "prompt must be a string or an array of one string")
	}
	if r.N != nil && *r.N != 1 {
		return api.GenerateRequest{}, invalidParam("n", "only n=1 is supported")
	}
	if err := errors.Join(checkTokens(limit, tokenParam{"max_tokens", r.MaxTokens}), checkStop(r.Stop)); err != nil {
		return api.GenerateRequest{}, err
	}
	if err := r.checkSampling(); err != nil {
		return api.GenerateRequest{}, err
	}
	out, err := openai.FromCompleteRequest(r.CompletionRequest)
	if err != nil {
		return out, invalidParam("stop", "%s", err.Error())
	}
	return out, nil
}

// checkSampling checks the sampling parameters' ranges, as OpenAI does
// (the library passes any value on to Ollama).
func (r *completionRequest) checkSampling() error {
	var temp *float64
	if r.Temperature != nil {
		t := float64(*r.Temperature)
		temp = &t
	}
	topP, freq, pres := float64(r.TopP), float64(r.FrequencyPenalty), float64(r.PresencePenalty)
	return checkSampling(temp, &topP, &freq, &pres)
}

func singleString(p []any) (string, bool) {
	if len(p) != 1 {
		return "", false
	}
	s, ok := p[0].(string)
	return s, ok
}

func (s *Server) completions(c *fiber.Ctx) error {
	var req completionRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	greq, err := req.toOllama(s.tokenLimit())
	if err != nil {
		return err
	}
	ri := requestInfo(c)
	ri.setModel(req.Model)
	id := s.ids.next("cmpl-")
	g := generateGeneration(s.be, &greq)
	if !req.Stream {
		final, err := collect(s, c, g)
		if err != nil {
			return err
		}
		return c.JSON(openai.ToCompletion(id, final))
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	return s.serveStream(c, stream{
		contentType: "text/event-stream",
		fail:        func(e *Error) []byte { return sseFrame("", inBandError(familyOpenAI, e)) },
		run: func(ctx context.Context, send func([]byte) error) error {
			return g.call(ctx, func(r api.GenerateResponse) error {
				ri.count(g.metrics(r))
				ch := openai.ToCompleteChunk(id, r)
				if err := sendJSON(send, ch); err != nil || !r.Done {
					return err
				}
				if includeUsage {
					u := openai.ToUsageGenerate(r)
					ch.Usage, ch.Choices = &u, []openai.CompleteChunkChoice{}
					if err := sendJSON(send, ch); err != nil {
						return err
					}
				}
				return send(sseDone)
			})
		},
	})
}

func (s *Server) embeddings(c *fiber.Ctx) error {
	var req openai.EmbedRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	ereq, err := toEmbedRequest(req)
	if err != nil {
		return err
	}
	ri := requestInfo(c)
	ri.setModel(req.Model)
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := s.be.Embed(ctx, ereq)
	if err != nil {
		return err
	}
	ri.promptTokens = resp.PromptEvalCount
	return c.JSON(openai.ToEmbeddingList(req.Model, *resp, req.EncodingFormat))
}

func toEmbedRequest(req openai.EmbedRequest) (*api.EmbedRequest, error) {
	if req.Model == "" {
		return nil, invalidParam("model", "you must provide a model parameter")
	}
	switch strings.ToLower(req.EncodingFormat) {
	case "", "float", "base64":
	default:
		return nil, invalidParam("encoding_format", "invalid encoding_format %q: want float or base64", cut(req.EncodingFormat))
	}
	if req.Dimensions < 0 {
		return nil, invalidParam("dimensions", "dimensions must be positive")
	}
	input, err := embedInput(req.Input)
	if err != nil {
		return nil, err
	}
	return &api.EmbedRequest{Model: req.Model, Input: input, Dimensions: req.Dimensions}, nil
}

func embedInput(in any) (any, error) {
	switch v := in.(type) {
	case string:
		if v == "" {
			return nil, invalidParam("input", "input must not be empty")
		}
		return v, nil
	case []any:
		if len(v) == 0 {
			return nil, invalidParam("input", "input must not be empty")
		}
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, invalidParam("input", "input must be a string or an array of strings (token arrays are not supported)")
			}
			out[i] = s
		}
		return out, nil
	case nil:
		return nil, invalidParam("input", "you must provide an input")
	}
	return nil, invalidParam("input", "input must be a string or an array of strings")
}

func (s *Server) listModels(c *fiber.Ctx) error {
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
	defer cancel()
	list, err := s.be.List(ctx)
	if err != nil {
		return err
	}
	out := openai.ToListCompletion(*list)
	if out.Data == nil {
		out.Data = []openai.Model{}
	}
	return c.JSON(out)
}

func (s *Server) getModel(c *fiber.Ctx) error {
	if c.Params("*") == "" {
		return s.listModels(c)
	}
	// SDKs escape the id ("acme%2Fcoder:7b").
	name, err := url.PathUnescape(c.Params("*"))
	if err != nil {
		return invalidParam("model", "the model id in the path is not validly escaped")
	}
	if err := checkModelName(name); err != nil {
		return err
	}
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return err
	}
	defer cancel()
	show, err := s.be.Show(ctx, &api.ShowRequest{Model: name})
	if errors.Is(err, backend.ErrModelNotFound) {
		return modelNotFound(name)
	}
	if err != nil {
		return err
	}
	return c.JSON(openai.ToModel(*show, name))
}
