package ollamasim_test

import (
	"math"
	"slices"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

func norm(v []float32) float64 {
	var s float64
	for _, f := range v {
		s += float64(f) * float64(f)
	}
	return math.Sqrt(s)
}

func TestEmbed(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	tests := []struct {
		name    string
		model   string
		input   any
		dims    int
		wantN   int
		wantDim int
		wantErr int
	}{
		{name: "string", model: embedModel, input: "hello", wantN: 1, wantDim: 768},
		{name: "list", model: embedModel, input: []string{"a", "b", "c"}, wantN: 3, wantDim: 768},
		{name: "chat model dim", model: chatModel, input: "hello", wantN: 1, wantDim: 2048},
		{name: "truncated", model: embedModel, input: "hello", dims: 64, wantN: 1, wantDim: 64},
		{name: "empty loads", model: embedModel, input: "", wantN: 0},
		{name: "bad input", model: embedModel, input: 42, wantErr: 400},
		{name: "unknown model", model: "nope", input: "x", wantErr: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Embed(testCtx(t), &api.EmbedRequest{Model: tc.model, Input: tc.input, Dimensions: tc.dims})
			if tc.wantErr != 0 {
				if statusOf(err) != tc.wantErr {
					t.Fatalf("err %v, want %d", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Embeddings) != tc.wantN {
				t.Fatalf("%d embeddings, want %d", len(resp.Embeddings), tc.wantN)
			}
			for _, v := range resp.Embeddings {
				if len(v) != tc.wantDim || math.Abs(norm(v)-1) > 1e-4 {
					t.Errorf("dim %d norm %v, want dim %d and a unit vector", len(v), norm(v), tc.wantDim)
				}
			}
			if tc.wantN > 0 && resp.PromptEvalCount == 0 {
				t.Error("prompt_eval_count missing")
			}
		})
	}
}

func TestEmbedDeterministic(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	embed := func(in any) [][]float32 {
		resp, err := c.Embed(testCtx(t), &api.EmbedRequest{Model: embedModel, Input: in})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Embeddings
	}
	a, b := embed("alpha"), embed([]string{"alpha", "beta"})
	if !slices.Equal(a[0], b[0]) {
		t.Error("same text, different vectors")
	}
	if slices.Equal(b[0], b[1]) {
		t.Error("different texts, same vector")
	}
	if !slices.Equal(a[0], ollamasim.Embed(embedModel, "alpha", 768)) {
		t.Error("vector differs from ollamasim.Embed")
	}

	legacy, err := c.Embeddings(testCtx(t), &api.EmbeddingRequest{Model: embedModel, Prompt: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if len(legacy.Embedding) != 768 || float32(legacy.Embedding[0]) != a[0][0] {
		t.Errorf("legacy embedding of %d values, want the /api/embed vector", len(legacy.Embedding))
	}
	_, err = c.Embeddings(testCtx(t), &api.EmbeddingRequest{Model: "nope", Prompt: "x"})
	if statusOf(err) != 404 {
		t.Errorf("legacy unknown model: %v, want 404", err)
	}
}
