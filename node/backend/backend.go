// Package backend declares what a node needs from an inference engine and the
// errors every engine adapter maps its failures to.
//
// The request and response types are Ollama's wire types
// (github.com/ollama/ollama/api): they are the common language of the
// OpenAI and Anthropic translators that node/api uses, so a second set of
// "neutral" copies would only add a conversion on the token path. Only
// node/backend/ollama talks to an engine over the network.
package backend

import (
	"context"
	"errors"
	"time"

	"github.com/ollama/ollama/api"
)

// Sentinel errors. Adapters wrap them with %w so callers test with errors.Is.
var (
	// ErrModelNotFound: the engine does not have the requested model.
	ErrModelNotFound = errors.New("model not found")
	// ErrOverloaded: the engine's queue is full; retry later.
	ErrOverloaded = errors.New("backend overloaded")
	// ErrRateLimited: the engine refuses more requests from this client
	// for now (HTTP 429); retry later.
	ErrRateLimited = errors.New("too many requests from this client")
	// ErrUnavailable: the engine cannot be reached.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrBadRequest: the engine rejected the request as invalid.
	ErrBadRequest = errors.New("backend rejected request")
	// ErrTruncated: a streamed response ended without its final message.
	ErrTruncated = errors.New("backend stream ended early")
	// ErrFailed: the engine failed while serving the request.
	ErrFailed = errors.New("backend failed")
)

// PinKeepAlive is the keep_alive that pins a model in memory (Ollama reads
// any negative value as forever). The agent loads every model placed on
// its node with it, and the router sends it with every request that a
// replica placed on its node serves, so that no request changes how long
// a replica stays loaded.
const PinKeepAlive time.Duration = -1

// Backend is one inference engine (a local Ollama). Streaming methods call fn
// for every partial response; an error from fn stops the call and is returned.
// Every method stops when ctx is cancelled.
type Backend interface {
	Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error
	Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error
	Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error)
	List(ctx context.Context) (*api.ListResponse, error)
	ListRunning(ctx context.Context) (*api.ProcessResponse, error)
	Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error)
	Pull(ctx context.Context, req *api.PullRequest, fn func(api.ProgressResponse) error) error
	Delete(ctx context.Context, req *api.DeleteRequest) error
	Copy(ctx context.Context, req *api.CopyRequest) error
	Version(ctx context.Context) (string, error)
	Heartbeat(ctx context.Context) error
}
