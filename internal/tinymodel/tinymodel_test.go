package tinymodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
)

func decode(t *testing.T, b []byte) *ggml.GGML {
	t.Helper()
	g, err := ggml.Decode(bytes.NewReader(b), -1)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return g
}

func TestWriteDecodes(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, Options{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	g := decode(t, buf.Bytes())
	kv := g.KV()
	if got := kv.Architecture(); got != "llama" {
		t.Errorf("architecture = %q, want llama", got)
	}
	if got := kv.BlockCount(); got != 2 {
		t.Errorf("block count = %d, want 2", got)
	}
	if got := kv.EmbeddingLength(); got != 64 {
		t.Errorf("embedding length = %d, want 64", got)
	}
	if got := kv.HeadCountMax(); got != 4 {
		t.Errorf("head count = %d, want 4", got)
	}
	if got := kv.HeadCountKVMax(); got != 2 {
		t.Errorf("kv head count = %d, want 2", got)
	}
	if got := kv.ContextLength(); got != 2048 {
		t.Errorf("context length = %d, want 2048", got)
	}
	if got := kv.String("tokenizer.ggml.model"); got != "llama" {
		t.Errorf("tokenizer model = %q, want llama", got)
	}
	tokens := kv.Strings("tokenizer.ggml.tokens")
	if len(tokens) != VocabularySize() || len(kv.Floats("tokenizer.ggml.scores")) != len(tokens) || len(kv.Ints("tokenizer.ggml.token_type")) != len(tokens) {
		t.Errorf("vocabulary arrays disagree: %d tokens, %d scores, %d types, want %d",
			len(tokens), len(kv.Floats("tokenizer.ggml.scores")), len(kv.Ints("tokenizer.ggml.token_type")), VocabularySize())
	}
	if len(tokens) > EOSID && (tokens[BOSID] != "<s>" || tokens[EOSID] != "</s>") {
		t.Errorf("special tokens = %q %q", tokens[BOSID], tokens[EOSID])
	}
	if got := tokens[firstByteToken+0x0A]; got != "<0x0A>" {
		t.Errorf("byte token for newline = %q", got)
	}

	// 9 tensors per block, plus token_embd, output_norm and output.
	items := g.Tensors().Items()
	if want := 9*2 + 3; len(items) != want {
		t.Fatalf("tensor count = %d, want %d", len(items), want)
	}
	byName := map[string]*ggml.Tensor{}
	for _, ts := range items {
		byName[ts.Name] = ts
	}
	for name, shape := range map[string][]uint64{
		"token_embd.weight":      {64, uint64(VocabularySize())},
		"blk.0.attn_q.weight":    {64, 64},
		"blk.1.attn_k.weight":    {64, 32},
		"blk.1.ffn_down.weight":  {128, 64},
		"output_norm.weight":     {64},
		"output.weight":          {64, uint64(VocabularySize())},
		"blk.0.attn_norm.weight": {64},
	} {
		ts, ok := byName[name]
		if !ok {
			t.Errorf("tensor %s missing", name)
			continue
		}
		if !equal(ts.Shape, shape) {
			t.Errorf("tensor %s shape = %v, want %v", name, ts.Shape, shape)
		}
	}

	// The file must hold all tensor data after the header.
	var data uint64
	for _, ts := range items {
		data += ts.Size()
	}
	if uint64(buf.Len()) < data+uint64(g.Tensors().Offset) {
		t.Errorf("file is %d bytes, tensor data ends at %d", buf.Len(), data+uint64(g.Tensors().Offset))
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOptionsShapeModel(t *testing.T) {
	var buf bytes.Buffer
	opts := Options{Layers: 3, Width: 32, Heads: 2, KVHeads: 1, FeedForward: 48, ContextLength: 512, PoolingType: 1, Seed: 7}
	if err := Write(&buf, opts); err != nil {
		t.Fatal(err)
	}
	g := decode(t, buf.Bytes())
	kv := g.KV()
	if kv.BlockCount() != 3 || kv.EmbeddingLength() != 32 || kv.ContextLength() != 512 {
		t.Errorf("got blocks %d width %d ctx %d", kv.BlockCount(), kv.EmbeddingLength(), kv.ContextLength())
	}
	if got := kv.Uint("pooling_type"); got != 1 {
		t.Errorf("pooling type = %d, want 1", got)
	}
	if got := len(g.Tensors().Items()); got != 9*3+3 {
		t.Errorf("tensor count = %d, want %d", got, 9*3+3)
	}
}

func TestNoFileType(t *testing.T) {
	for _, omit := range []bool{false, true} {
		var buf bytes.Buffer
		if err := Write(&buf, Options{NoFileType: omit}); err != nil {
			t.Fatal(err)
		}
		if _, has := decode(t, buf.Bytes()).KV()["general.file_type"]; has == omit {
			t.Errorf("NoFileType %v: general.file_type present %v", omit, has)
		}
	}
}

// TestTiedEmbeddings checks that a tied model has no output.weight, so
// that Ollama's layer grouping (and llama.cpp) takes the token embedding
// for the output layer, and that its other tensors are the untied model's.
func TestTiedEmbeddings(t *testing.T) {
	layers := map[bool]map[string]uint64{}
	for _, tied := range []bool{false, true} {
		var buf bytes.Buffer
		if err := Write(&buf, Options{Seed: 3, TiedEmbeddings: tied}); err != nil {
			t.Fatal(err)
		}
		g := decode(t, buf.Bytes())
		_, hasOutput := g.Tensors().GroupLayers()["output"]
		if hasOutput == tied {
			t.Errorf("tied %v: output layer present %v", tied, hasOutput)
		}
		sizes := map[string]uint64{}
		for _, ts := range g.Tensors().Items() {
			sizes[ts.Name] = ts.Size()
		}
		layers[tied] = sizes
	}
	for name, size := range layers[false] {
		if got, ok := layers[true][name]; name != "output.weight" && (!ok || got != size) {
			t.Errorf("tensor %s: %d bytes untied, %d (present %v) tied", name, size, got, ok)
		}
	}
	if len(layers[true]) != len(layers[false])-1 {
		t.Errorf("tied model has %d tensors, untied %d", len(layers[true]), len(layers[false]))
	}
}

func TestDeterministic(t *testing.T) {
	write := func(seed uint64) []byte {
		var buf bytes.Buffer
		if err := Write(&buf, Options{Seed: seed}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b, c := write(42), write(42), write(43)
	if !bytes.Equal(a, b) {
		t.Error("same seed produced different files")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds produced the same file")
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	digest, size, err := WriteFile(path, Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Errorf("size = %d, file has %d bytes", size, len(b))
	}
	sum := sha256.Sum256(b)
	if want := "sha256:" + hex.EncodeToString(sum[:]); digest != want {
		t.Errorf("digest = %s, want %s", digest, want)
	}
	var buf bytes.Buffer
	if err := Write(&buf, Options{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), b) {
		t.Error("WriteFile and Write disagree for the same options")
	}
	if size > 1<<20 {
		t.Errorf("tiny model is %d bytes, want under 1 MiB", size)
	}
	t.Logf("tiny model: %d bytes, %s", size, digest)
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the model", len(entries))
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{Width: 64, Heads: 5},
		{Heads: 4, KVHeads: 3},
		{Layers: -1},
		{Width: 12, Heads: 4}, // odd head dimension
		{PoolingType: 9},
		{TiedEmbeddings: true, Script: []string{"a piece"}},
	} {
		if err := Write(&bytes.Buffer{}, o); err == nil {
			t.Errorf("Write(%+v) succeeded, want error", o)
		}
	}
}
