package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/tinymodel"
)

// target is one backend kind that the end-to-end suites run against, with
// the model names it serves and what those models can do.
type target struct {
	name      string
	ollamaURL string
	chat      string // a chat model
	embed     string // an embedding model
	embedDims int
	think     string // a thinking model, "" when the backend has none
	tools     string // a model that answers with tool calls when asked, "" when none
	// toolsFollowUp is whether the tools model answers a tool result with
	// text (a scripted model calls its tool every time).
	toolsFollowUp bool
	sim           *ollamasim.Server
	rig           *ollamarig.Rig
}

// simTarget starts the simulated Ollama with its default models. Its tool
// calls follow the simulator's rule: a tool is called when the last user
// message names it.
func simTarget(t *testing.T, cfg ollamasim.Config) target {
	sim := ollamasim.StartTest(t, cfg)
	return target{
		name: "sim", ollamaURL: sim.URL(), chat: "llama3.2:1b", embed: "nomic-embed-text",
		embedDims: 768, think: "deepseek-r1:1.5b", tools: "llama3.2:1b", toolsFollowUp: true, sim: sim,
	}
}

// ollamaTarget starts the real Ollama with tiny generated models: one for
// chat, one with mean pooling for embeddings, and two scripted ones that
// always answer with a get_weather call or with thinking and then text.
func ollamaTarget(t *testing.T) target {
	ollamarig.Require(t)
	rig := ollamarig.Start(t, ollamarig.Options{NumParallel: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := rig.CreateTiny(ctx, "tiny"); err != nil {
		t.Fatal(err)
	}
	embed := ollamarig.CreateOptions{Model: tinymodel.Options{PoolingType: 1, Name: "sovra-tiny-embed"}}
	if err := rig.CreateTinyWith(ctx, "tiny-embed", embed); err != nil {
		t.Fatal(err)
	}
	if err := rig.CreateToolCaller(ctx, "tool-caller"); err != nil {
		t.Fatal(err)
	}
	if err := rig.CreateThinker(ctx, "thinker"); err != nil {
		t.Fatal(err)
	}
	return target{name: "ollama", ollamaURL: rig.URL, chat: "tiny", embed: "tiny-embed", embedDims: 64,
		think: "thinker", tools: "tool-caller", rig: rig}
}

// eachTarget runs fn as a subtest against the default simulator and the
// real Ollama.
func eachTarget(t *testing.T, fn func(t *testing.T, tg target)) {
	eachTargetWith(t, func(t *testing.T) target { return simTarget(t, ollamasim.Config{}) }, fn)
}

// eachTargetWith is eachTarget with a simulator of the caller's making.
func eachTargetWith(t *testing.T, sim func(*testing.T) target, fn func(t *testing.T, tg target)) {
	t.Run("sim", func(t *testing.T) { fn(t, sim(t)) })
	t.Run("ollama", func(t *testing.T) { fn(t, ollamaTarget(t)) })
}
