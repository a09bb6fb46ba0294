package ollama

import "testing"

// Lines as Ollama streams them: one per token, and the final one.
var (
	tokenLine = []byte(`{"model":"llama3.2:1b","created_at":"2026-12-03T22:15:15.123456789Z","message":{"role":"assistant","content":" proxy"},"done":false}` + "\n")
	finalLine = []byte(`{"model":"llama3.2:1b","created_at":"2026-12-03T22:15:15.923456789Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":812345678,"load_duration":1234567,"prompt_eval_count":26,"prompt_eval_duration":23456789,"eval_count":200,"eval_duration":787654321}` + "\n")
)

// BenchmarkChatLine: the cost of decoding one streamed chat line, paid
// for every token of every answer (the final line takes the full path).
func BenchmarkChatLine(b *testing.B) {
	for _, tc := range []struct {
		name string
		line []byte
	}{{"token", tokenLine}, {"final", finalLine}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeChatLine(tc.line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
