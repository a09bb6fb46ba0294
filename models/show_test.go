package models

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// llamaShow is model_info as /api/show returns it for llama3.1:8b (long
// arrays emptied, as Ollama does unless asked to be verbose).
const llamaShow = `{
	"general.architecture": "llama",
	"general.basename": "Meta-Llama-3.1",
	"general.file_type": 15,
	"general.license": "llama3.1",
	"general.parameter_count": 8030261312,
	"general.quantization_version": 2,
	"llama.attention.head_count": 32,
	"llama.attention.head_count_kv": 8,
	"llama.attention.layer_norm_rms_epsilon": 0.00001,
	"llama.block_count": 32,
	"llama.context_length": 131072,
	"llama.embedding_length": 4096,
	"llama.feed_forward_length": 14336,
	"llama.rope.dimension_count": 128,
	"llama.rope.freq_base": 500000,
	"llama.vocab_size": 128256,
	"tokenizer.ggml.bos_token_id": 128000,
	"tokenizer.ggml.model": "gpt2",
	"tokenizer.ggml.tokens": []
}`

// deepseekShow is model_info of a DeepSeek-V3 GGUF; mla adds the keys of
// the newer conversions that cache the attention latent.
func deepseekShow(t *testing.T, mla bool) map[string]any {
	info := decode(t, `{
		"general.architecture": "deepseek2",
		"general.file_type": 15,
		"general.parameter_count": 671026419200,
		"deepseek2.attention.head_count": 128,
		"deepseek2.attention.head_count_kv": 128,
		"deepseek2.attention.key_length": 192,
		"deepseek2.attention.value_length": 128,
		"deepseek2.attention.kv_lora_rank": 512,
		"deepseek2.attention.q_lora_rank": 1536,
		"deepseek2.rope.dimension_count": 64,
		"deepseek2.block_count": 61,
		"deepseek2.context_length": 163840,
		"deepseek2.embedding_length": 7168,
		"deepseek2.expert_count": 256,
		"deepseek2.expert_used_count": 8,
		"deepseek2.vocab_size": 129280
	}`)
	if mla {
		info["deepseek2.attention.head_count_kv"] = 1.0
		info["deepseek2.attention.key_length"] = 576.0
		info["deepseek2.attention.value_length"] = 512.0
		info["deepseek2.attention.key_length_mla"] = 192.0
		info["deepseek2.attention.value_length_mla"] = 128.0
	}
	return info
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFromShow(t *testing.T) {
	cases := []struct {
		name string
		in   string
		info func(*testing.T) map[string]any
		want Model
	}{
		{
			name: "llama", in: "registry.ollama.ai/library/llama3.1:8b",
			info: func(t *testing.T) map[string]any { return decode(t, llamaShow) },
			want: Model{
				Name: "llama3.1:8b", Family: "llama3.1", Architecture: "llama",
				Parameters: 8030261312, Quantization: "Q4_K_M",
				Layers: 32, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
				Vocab: 128256, ContextLength: 131072, License: "llama3.1",
			},
		},
		{
			name: "deepseek with latent cache", in: "deepseek-v3",
			info: func(t *testing.T) map[string]any { return deepseekShow(t, true) },
			want: Model{
				Name: "deepseek-v3:latest", Family: "deepseek-v3", Architecture: "deepseek2",
				Parameters: 671026419200, Quantization: "Q4_K_M", Experts: 256, ExpertsUsed: 8,
				Layers: 61, Embedding: 7168, Heads: 128, KVHeads: 1, HeadDimK: 192, HeadDimV: 128,
				KVLatentDim: 576, Vocab: 129280, ContextLength: 163840,
			},
		},
		{
			name: "deepseek with per-head cache", in: "deepseek-r1:671b",
			info: func(t *testing.T) map[string]any { return deepseekShow(t, false) },
			want: Model{
				Name: "deepseek-r1:671b", Family: "deepseek-r1", Architecture: "deepseek2",
				Parameters: 671026419200, Quantization: "Q4_K_M", Experts: 256, ExpertsUsed: 8,
				Layers: 61, Embedding: 7168, Heads: 128, KVHeads: 128, HeadDimK: 192, HeadDimV: 128,
				Vocab: 129280, ContextLength: 163840,
			},
		},
		{
			name: "defaults and per-layer arrays", in: "acme/tiny:1",
			info: func(t *testing.T) map[string]any {
				return decode(t, `{
					"general.architecture": "llama", "general.file_type": 0, "general.parameter_count": 100000,
					"llama.block_count": 2, "llama.context_length": 2048, "llama.embedding_length": 64,
					"llama.attention.head_count": [4, 4],
					"tokenizer.ggml.tokens": ["a", "b", "c", "d", "e", "f"]
				}`)
			},
			want: Model{
				Name: "acme/tiny:1", Family: "acme/tiny", Architecture: "llama",
				Parameters: 100000, Quantization: "F32",
				Layers: 2, Embedding: 64, Heads: 4, KVHeads: 4, HeadDimK: 16, HeadDimV: 16,
				Vocab: 6, ContextLength: 2048,
			},
		},
		{
			name: "Go integers as in a GGUF reader", in: "tiny",
			info: func(*testing.T) map[string]any {
				return map[string]any{
					"general.architecture": "llama", "general.file_type": uint32(1), "general.parameter_count": uint64(200000),
					"llama.block_count": uint32(4), "llama.context_length": int64(4096), "llama.embedding_length": int(128),
					"llama.attention.head_count": uint32(8), "llama.attention.head_count_kv": uint32(2),
					"llama.vocab_size": json.Number("300"),
				}
			},
			want: Model{
				Name: "tiny:latest", Family: "tiny", Architecture: "llama",
				Parameters: 200000, Quantization: "F16",
				Layers: 4, Embedding: 128, Heads: 8, KVHeads: 2, HeadDimK: 16, HeadDimV: 16,
				Vocab: 300, ContextLength: 4096,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromShow(c.in, c.info(t))
			if err != nil {
				t.Fatal(err)
			}
			got.Source = ""
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("FromShow =\n %+v\nwant\n %+v", got, c.want)
			}
		})
	}
}

func TestFromShowErrors(t *testing.T) {
	base := func(t *testing.T) map[string]any { return decode(t, llamaShow) }
	cases := []struct {
		name   string
		in     string
		change func(map[string]any)
		want   error
		says   string
	}{
		{"bad name", "llama 3", func(map[string]any) {}, ErrInvalidName, ""},
		{"no architecture", "x", func(i map[string]any) { delete(i, "general.architecture") }, ErrInvalidModel, "general.architecture"},
		{"no parameter count", "x", func(i map[string]any) { delete(i, "general.parameter_count") }, ErrInvalidModel, "general.parameter_count"},
		{"no block count", "x", func(i map[string]any) { delete(i, "llama.block_count") }, ErrInvalidModel, "llama.block_count"},
		{"no context", "x", func(i map[string]any) { delete(i, "llama.context_length") }, ErrInvalidModel, "llama.context_length"},
		{"no heads", "x", func(i map[string]any) { delete(i, "llama.attention.head_count") }, ErrInvalidModel, "head_count"},
		{"negative layers", "x", func(i map[string]any) { i["llama.block_count"] = -2.0 }, ErrInvalidModel, "block_count"},
		{"fractional heads", "x", func(i map[string]any) { i["llama.attention.head_count"] = 32.5 }, ErrInvalidModel, "head_count"},
		{"text for a number", "x", func(i map[string]any) { i["llama.embedding_length"] = "4096" }, ErrInvalidModel, "embedding_length"},
		{"empty head array", "x", func(i map[string]any) { i["llama.attention.head_count"] = []any{} }, ErrInvalidModel, "head_count"},
		{"zero heads", "x", func(i map[string]any) { i["llama.attention.head_count"] = 0.0 }, ErrInvalidModel, "heads"},
		{"kv heads not dividing", "x", func(i map[string]any) { i["llama.attention.head_count_kv"] = 7.0 }, ErrInvalidModel, "divide"},
		{"unknown file type", "x", func(i map[string]any) { i["general.file_type"] = 999.0 }, ErrInvalidModel, "quantisation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info := base(t)
			c.change(info)
			m, err := FromShow(c.in, info)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("FromShow = %+v, %v; want %v saying %q", m, err, c.want, c.says)
			}
		})
	}
}

// TestFromShowWithSize checks that a GGUF without general.file_type is
// sized by its file: without the size it cannot be.
func TestFromShowWithSize(t *testing.T) {
	info := decode(t, llamaShow)
	delete(info, "general.file_type")
	if _, err := FromShow("untyped:8b", info); !errors.Is(err, ErrInvalidModel) {
		t.Fatalf("without a file type or size: %v", err)
	}
	m, err := FromShowWithSize("untyped:8b", info, 4_920_753_328)
	if err != nil || m.FileSize != 4_920_753_328 || m.WeightBytes() != 4_920_753_328 || m.Quantization != "" {
		t.Fatalf("FromShowWithSize = %+v, %v", m, err)
	}
}

func TestFromShowRegisters(t *testing.T) {
	m, err := FromShow("acme/llama:8b", decode(t, llamaShow))
	if err != nil {
		t.Fatal(err)
	}
	m.FileSize = 4_920_753_328
	cat := NewCatalog()
	if err := cat.Register(m); err != nil {
		t.Fatal(err)
	}
	got, ok := cat.Lookup("ACME/llama:8b")
	if !ok || got.FileSize != m.FileSize {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}
	// The built-in entry and the one read from model_info agree on the
	// KV cache.
	b, _ := Lookup("llama3.1:8b")
	if b.KVElementsPerToken() != got.KVElementsPerToken() {
		t.Fatalf("KV per token: built-in %d, from model_info %d", b.KVElementsPerToken(), got.KVElementsPerToken())
	}
}
