package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
	"github.com/ollama/ollama/ml"

	"github.com/sovra/sovra/models"
)

// TestDeepSeek2GraphMatchesOllama checks the compute graph the estimate
// charges a deepseek2 model against the figure Ollama v0.17.4's own
// estimate gives (fs/ggml GGML.GraphSize, full offload), on GGUF files
// of DeepSeek's layout in both forms llama.cpp writes: the older one with
// keys and values per head, and the one with multi-head latent attention
// spelt out (attention.key_length_mla, one KV head whose key is the
// latent), as read back through models.FromShow. The figures are scaled
// down; the contexts cover both terms of Ollama's max.
func TestDeepSeek2GraphMatchesOllama(t *testing.T) {
	const emb, heads, vocab, rank, rope, nope, vDim = 256, 8, 1000, 64, 16, 32, 32
	forms := map[string]map[string]any{
		"per-head keys and values": {
			"attention.head_count_kv": uint32(heads),
			"attention.key_length":    uint32(nope + rope),
			"attention.value_length":  uint32(vDim),
		},
		"latent attention": {
			"attention.head_count_kv":    uint32(1),
			"attention.key_length":       uint32(rank + rope),
			"attention.value_length":     uint32(rank),
			"attention.key_length_mla":   uint32(nope + rope),
			"attention.value_length_mla": uint32(vDim),
		},
	}
	dir := t.TempDir()
	for form, attn := range forms {
		kv := ggml.KV{
			"general.architecture":                "deepseek2",
			"general.file_type":                   uint32(ggml.FileTypeF32),
			"deepseek2.block_count":               uint32(2),
			"deepseek2.context_length":            uint32(163840),
			"deepseek2.embedding_length":          uint32(emb),
			"deepseek2.attention.head_count":      uint32(heads),
			"deepseek2.attention.kv_lora_rank":    uint32(rank),
			"deepseek2.rope.dimension_count":      uint32(rope),
			"deepseek2.vocab_size":                uint32(vocab),
			"deepseek2.expert_count":              uint32(4),
			"deepseek2.expert_used_count":         uint32(2),
			"tokenizer.ggml.model":                "gpt2",
			"tokenizer.ggml.tokens":               tokenNames(vocab),
			"deepseek2.leading_dense_block_count": uint32(1),
		}
		for k, v := range attn {
			kv["deepseek2."+k] = v
		}
		path := filepath.Join(dir, fmt.Sprintf("deepseek2-%d.gguf", len(attn)))
		writeGGUFFile(t, path, kv, []*ggml.Tensor{
			zeroTensor("token_embd.weight", emb, vocab),
			zeroTensor("output.weight", emb, vocab),
			zeroTensor("output_norm.weight", emb),
			zeroTensor("blk.0.attn_norm.weight", emb),
			zeroTensor("blk.1.attn_norm.weight", emb),
		})
		f := decodeGGUF(t, path)
		m, err := models.FromShow("deepseek-tiny:latest", map[string]any(f.KV()))
		if err != nil {
			t.Fatalf("%s: FromShow: %v", form, err)
		}
		for _, c := range []int{16, 512, 4096, 32768} {
			for _, parallel := range []int{1, 2} {
				est := models.Estimate(m, models.EstimateOptions{Context: c, Parallel: parallel, GPUs: []uint64{1 << 40}})
				_, _, full := f.GraphSize(uint64(est.Context), uint64(est.Batch), parallel, "", ml.FlashAttentionAuto)
				if est.Graph != full {
					t.Errorf("%s, ctx %d x %d: graph %d, Ollama's %d (%+d)", form, c, parallel, est.Graph, full, int64(est.Graph)-int64(full))
				}
			}
		}
	}
}

func tokenNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("t%d", i)
	}
	return out
}

// zeroTensor is an F32 tensor of the shape given, all zeros.
func zeroTensor(name string, shape ...uint64) *ggml.Tensor {
	n := uint64(1)
	for _, d := range shape {
		n *= d
	}
	return &ggml.Tensor{Name: name, Kind: uint32(ggml.TensorTypeF32), Shape: shape, WriterTo: zeros(4 * n)}
}

type zeros uint64

func (z zeros) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(make([]byte, z))
	return int64(n), err
}

func writeGGUFFile(t *testing.T, path string, kv ggml.KV, ts []*ggml.Tensor) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ggml.WriteGGUF(f, kv, ts); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
