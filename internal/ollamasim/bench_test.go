package ollamasim_test

import (
	"context"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

// BenchmarkChat measures the simulator's own overhead per streamed chat
// (no artificial delays), i.e. the floor of any benchmark built on it.
func BenchmarkChat(b *testing.B) {
	s := ollamasim.StartTest(b, ollamasim.Config{ResponseTokens: 32, Models: []ollamasim.ModelConfig{{Name: "m", Parallel: 64}}})
	c := s.Client()
	req := &api.ChatRequest{Model: "m", Messages: userMsg("benchmark prompt")}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Chat(context.Background(), req, func(api.ChatResponse) error { return nil }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEmbed measures a 768-dimension embedding round trip.
func BenchmarkEmbed(b *testing.B) {
	s := ollamasim.StartTest(b, ollamasim.Config{})
	c := s.Client()
	req := &api.EmbedRequest{Model: "nomic-embed-text", Input: []string{"one", "two"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Embed(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
