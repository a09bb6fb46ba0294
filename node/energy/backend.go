package energy

import (
	"context"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

// Counting wraps the node's local backend so that the output tokens of
// every generation it finishes (the eval_count of its final message) are
// counted with add, under the model the request named. A generation cut
// off before its final message (the client went away) is not counted:
// its energy goes to the other models on its GPUs, or to idle.
func Counting(be backend.Backend, add func(model string, tokens int64)) backend.Backend {
	return counting{Backend: be, add: add}
}

type counting struct {
	backend.Backend
	add func(model string, tokens int64)
}

func (c counting) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	return c.Backend.Chat(ctx, req, func(r api.ChatResponse) error {
		if r.Done {
			c.add(req.Model, int64(r.EvalCount))
		}
		return fn(r)
	})
}

func (c counting) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	return c.Backend.Generate(ctx, req, func(r api.GenerateResponse) error {
		if r.Done {
			c.add(req.Model, int64(r.EvalCount))
		}
		return fn(r)
	})
}
