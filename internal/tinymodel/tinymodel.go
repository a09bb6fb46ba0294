// Package tinymodel writes tiny llama-architecture GGUF models with random,
// seed-determined weights. The files are a few hundred kilobytes, load in
// the real Ollama server like any other llama model and let tests exercise
// chat, generate, embed and the scheduler without downloading weights.
//
// The vocabulary is byte-level SentencePiece style: <unk>, <s>, </s>, the
// 256 byte tokens <0x00>..<0xFF> and single printable ASCII characters
// (space written as "▁"). Only the printable tokens get non-zero rows in
// the output projection, so a greedy or sampled continuation is made of
// printable characters and practically never ends on its own: callers bound
// generation with num_predict.
//
// A scripted model (Options.Script) instead answers with a fixed sequence
// of pieces. Its vocabulary gains a start marker (ScriptStart, a control
// token, default "<|assistant|>") and one user-defined token per piece; the
// attention and feed-forward outputs are zero, so the logits at a position
// depend only on that position's token, and the output projection maps the
// marker to the first piece, each piece to the next and the last to </s>
// with a margin no sampler setting overcomes. Because the tokenizer splits
// control and user-defined tokens out of the prompt, a chat template whose
// prompt ends with the marker makes the model emit exactly the script, then
// stop. A prompt that ends with one of the pieces continues from there.
package tinymodel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/ollama/ollama/fs/ggml"
)

// Token ids of the special tokens.
const (
	UnkID = 0
	BOSID = 1
	EOSID = 2
)

// SentencePiece token types as stored in tokenizer.ggml.token_type.
const (
	tokenNormal      = 1
	tokenUnknown     = 2
	tokenControl     = 3
	tokenUserDefined = 4
	tokenByte        = 6
)

// DefaultScriptStart is the start marker of scripted models when
// Options.ScriptStart is empty.
const DefaultScriptStart = "<|assistant|>"

// ScriptLogit is the logit a scripted model gives the scripted successor of
// a marker or piece; every other token's logit there is zero. Even at
// temperature 2, any other token has a probability below 1e-8.
const ScriptLogit = 50

// firstByteToken is the id of <0x00>; byte b has id firstByteToken+b.
const firstByteToken = 3

// Options shape the model. Zero fields take the defaults noted.
type Options struct {
	// Layers is the number of transformer blocks (default 2).
	Layers int
	// Width is the embedding length (default 64).
	Width int
	// Heads is the number of attention heads (default 4). Width must be a
	// multiple of Heads.
	Heads int
	// KVHeads is the number of key/value heads (default 2). Heads must be a
	// multiple of KVHeads.
	KVHeads int
	// FeedForward is the hidden size of the MLP (default 2*Width).
	FeedForward int
	// ContextLength is the trained context length stored in the metadata
	// (default 2048).
	ContextLength int
	// Seed selects the weights. Equal options give byte-identical files.
	Seed uint64
	// PoolingType, when non-zero, stores llama.pooling_type (1 mean, 2 cls,
	// 3 last). Ollama then treats the model as embedding-only.
	PoolingType int
	// Name is stored as general.name (default "sovra-tiny").
	Name string
	// NoFileType leaves general.file_type out of the metadata, as some
	// converters do.
	NoFileType bool
	// Script, when non-empty, makes the model scripted: after the token
	// ScriptStart it emits these pieces in order, each as one token, then
	// </s>. The pieces must be distinct, must not be tokens of the base
	// Vocabulary, and there may be at most Width/2-1 of them.
	Script []string
	// ScriptStart is the control token a scripted model starts its script
	// after (default DefaultScriptStart). A chat template whose prompt
	// ends with it makes every answer the script.
	ScriptStart string
	// TiedEmbeddings leaves output.weight out: the output projection is
	// the token embedding, as in models that tie them (llama.cpp then
	// uses token_embd.weight for both). Not with a Script, which needs
	// output rows of its own.
	TiedEmbeddings bool
}

func (o Options) withDefaults() Options {
	if o.Layers == 0 {
		o.Layers = 2
	}
	if o.Width == 0 {
		o.Width = 64
	}
	if o.Heads == 0 {
		o.Heads = 4
	}
	if o.KVHeads == 0 {
		o.KVHeads = min(2, o.Heads)
	}
	if o.FeedForward == 0 {
		o.FeedForward = 2 * o.Width
	}
	if o.ContextLength == 0 {
		o.ContextLength = 2048
	}
	if o.Name == "" {
		o.Name = "sovra-tiny"
	}
	if len(o.Script) > 0 && o.ScriptStart == "" {
		o.ScriptStart = DefaultScriptStart
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Layers < 1:
		return fmt.Errorf("tinymodel: layers %d < 1", o.Layers)
	case o.Width < 1, o.Heads < 1, o.KVHeads < 1, o.FeedForward < 1:
		return errors.New("tinymodel: width, heads, kv heads and feed forward must be positive")
	case o.Width%o.Heads != 0:
		return fmt.Errorf("tinymodel: width %d is not a multiple of heads %d", o.Width, o.Heads)
	case o.Heads%o.KVHeads != 0:
		return fmt.Errorf("tinymodel: heads %d is not a multiple of kv heads %d", o.Heads, o.KVHeads)
	case (o.Width/o.Heads)%2 != 0:
		return fmt.Errorf("tinymodel: head dimension %d must be even for rope", o.Width/o.Heads)
	case o.ContextLength < 1:
		return fmt.Errorf("tinymodel: context length %d < 1", o.ContextLength)
	case o.PoolingType < 0 || o.PoolingType > 3:
		return fmt.Errorf("tinymodel: pooling type %d not in 0..3", o.PoolingType)
	case o.TiedEmbeddings && len(o.Script) > 0:
		return errors.New("tinymodel: a scripted model cannot tie its embeddings")
	}
	return o.validateScript()
}

func (o Options) validateScript() error {
	if len(o.Script) == 0 {
		if o.ScriptStart != "" {
			return errors.New("tinymodel: script start without a script")
		}
		return nil
	}
	// Each chain token (the marker and the pieces) owns one embedding
	// dimension; the other tokens keep at least half of them.
	if chain := len(o.Script) + 1; chain > o.Width/2 {
		return fmt.Errorf("tinymodel: script of %d pieces needs width >= %d, have %d", len(o.Script), 2*chain, o.Width)
	}
	base, _, _ := Vocabulary()
	seen := make(map[string]bool, len(base)+len(o.Script)+1)
	for _, tok := range base {
		seen[tok] = true
	}
	for i, piece := range append([]string{o.ScriptStart}, o.Script...) {
		what := "script start"
		if i > 0 {
			what = fmt.Sprintf("script piece %d", i-1)
		}
		switch {
		case piece == "":
			return fmt.Errorf("tinymodel: %s is empty", what)
		case seen[piece]:
			return fmt.Errorf("tinymodel: %s %q is already a token", what, piece)
		}
		seen[piece] = true
	}
	return nil
}

// Vocabulary returns the token strings, scores and types of the model's
// vocabulary, in id order.
func Vocabulary() (tokens []string, scores []float32, types []int32) {
	add := func(s string, score float32, typ int32) {
		tokens = append(tokens, s)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, tokenUnknown)
	add("<s>", 0, tokenControl)
	add("</s>", 0, tokenControl)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, tokenByte)
	}
	// Printable ASCII; the space is the SentencePiece word marker.
	n := float32(0)
	for c := rune(' '); c <= '~'; c++ {
		s := string(c)
		if c == ' ' {
			s = "▁"
		}
		n++
		add(s, -n, tokenNormal)
	}
	return tokens, scores, types
}

// Vocabulary returns the vocabulary of a model written with o: the base
// Vocabulary, then, for a scripted model, the start marker (a control token)
// and one user-defined token per script piece.
func (o Options) Vocabulary() (tokens []string, scores []float32, types []int32) {
	o = o.withDefaults()
	tokens, scores, types = Vocabulary()
	if len(o.Script) == 0 {
		return tokens, scores, types
	}
	tokens = append(tokens, o.ScriptStart)
	scores = append(scores, 0)
	types = append(types, tokenControl)
	for _, piece := range o.Script {
		tokens = append(tokens, piece)
		scores = append(scores, 0)
		types = append(types, tokenUserDefined)
	}
	return tokens, scores, types
}

// VocabularySize is the number of tokens Vocabulary returns.
func VocabularySize() int {
	t, _, _ := Vocabulary()
	return len(t)
}

// Write writes the GGUF model described by opts to w.
func Write(w io.Writer, opts Options) error {
	f, err := os.CreateTemp("", "tinymodel-*.gguf")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := writeGGUF(f, opts); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}

// WriteFile writes the model to path and returns its digest in Ollama's
// blob form ("sha256:<hex>") and its size in bytes.
func WriteFile(path string, opts Options) (digest string, size int64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tinymodel-*.gguf")
	if err != nil {
		return "", 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = writeGGUF(f, opts); err != nil {
		return "", 0, err
	}
	if _, err = f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	h := sha256.New()
	if size, err = io.Copy(h, f); err != nil {
		return "", 0, err
	}
	if err = f.Close(); err != nil {
		return "", 0, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}

func writeGGUF(f *os.File, opts Options) error {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	kv, tensors := build(opts)
	return ggml.WriteGGUF(f, kv, tensors)
}

// build returns the metadata and tensors of the model.
func build(o Options) (ggml.KV, []*ggml.Tensor) {
	tokens, scores, types := o.Vocabulary()
	vocab := len(tokens)
	headDim := o.Width / o.Heads
	kvWidth := headDim * o.KVHeads

	kv := ggml.KV{
		"general.architecture":                   "llama",
		"general.name":                           o.Name,
		"general.file_type":                      uint32(ggml.FileTypeF32),
		"general.alignment":                      uint32(32),
		"llama.block_count":                      uint32(o.Layers),
		"llama.context_length":                   uint32(o.ContextLength),
		"llama.embedding_length":                 uint32(o.Width),
		"llama.feed_forward_length":              uint32(o.FeedForward),
		"llama.attention.head_count":             uint32(o.Heads),
		"llama.attention.head_count_kv":          uint32(o.KVHeads),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(headDim),
		"llama.rope.freq_base":                   float32(10000),
		"llama.vocab_size":                       uint32(vocab),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.tokens":                  tokens,
		"tokenizer.ggml.scores":                  scores,
		"tokenizer.ggml.token_type":              types,
		"tokenizer.ggml.unknown_token_id":        uint32(UnkID),
		"tokenizer.ggml.bos_token_id":            uint32(BOSID),
		"tokenizer.ggml.eos_token_id":            uint32(EOSID),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
	}
	if o.NoFileType {
		delete(kv, "general.file_type")
	}
	if o.PoolingType != 0 {
		kv["llama.pooling_type"] = uint32(o.PoolingType)
	}

	rng := rand.New(rand.NewPCG(o.Seed, 0x736f7672612d746d)) // "sovra-tm"
	var ts []*ggml.Tensor
	add := func(name string, data []float32, shape ...uint64) {
		ts = append(ts, &ggml.Tensor{
			Name:     name,
			Kind:     uint32(ggml.TensorTypeF32),
			Shape:    shape,
			WriterTo: f32s(data),
		})
	}
	random := func(n int, scale float64) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64() * scale)
		}
		return d
	}
	ones := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = 1
		}
		return d
	}
	w, ff := uint64(o.Width), uint64(o.FeedForward)
	inScale := 1 / math.Sqrt(float64(o.Width))
	ffScale := 1 / math.Sqrt(float64(o.FeedForward))
	scripted := len(o.Script) > 0
	// In a scripted model the blocks add nothing to the residual stream.
	blockOut := func(n int, scale float64) []float32 {
		d := random(n, scale)
		if scripted {
			clear(d)
		}
		return d
	}

	// The rows of a script's tokens take no random numbers, so the other
	// weights are those of the unscripted model with the same seed; script
	// sets those rows and edits embd and out before the file is written.
	extra := make([]float32, (vocab-VocabularySize())*o.Width)
	embd := append(random(VocabularySize()*o.Width, 1), extra...)
	add("token_embd.weight", embd, w, uint64(vocab))
	for i := range o.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		add(p+"attn_norm.weight", ones(o.Width), w)
		add(p+"attn_q.weight", random(o.Width*o.Width, inScale), w, w)
		add(p+"attn_k.weight", random(o.Width*kvWidth, inScale), w, uint64(kvWidth))
		add(p+"attn_v.weight", random(o.Width*kvWidth, inScale), w, uint64(kvWidth))
		add(p+"attn_output.weight", blockOut(o.Width*o.Width, inScale), w, w)
		add(p+"ffn_norm.weight", ones(o.Width), w)
		add(p+"ffn_gate.weight", random(o.Width*o.FeedForward, inScale), w, ff)
		add(p+"ffn_up.weight", random(o.Width*o.FeedForward, inScale), w, ff)
		add(p+"ffn_down.weight", blockOut(o.FeedForward*o.Width, ffScale), ff, w)
	}
	add("output_norm.weight", ones(o.Width), w)

	// Output projection: rows of special and byte tokens stay zero so the
	// model prefers printable tokens and practically never emits </s>.
	out := append(random(VocabularySize()*o.Width, inScale), extra...)
	for id, typ := range types {
		if typ != tokenNormal {
			clear(out[id*o.Width : (id+1)*o.Width])
		}
	}
	if scripted {
		script(o, vocab, embd, out)
	}
	if !o.TiedEmbeddings {
		add("output.weight", out, w, uint64(vocab))
	}
	return kv, ts
}

// script writes the script into the embeddings and the output projection
// of a model whose blocks add nothing, so that the final hidden state at a
// position is the RMS-normalised embedding of its token. The k-th chain
// token (the marker, then the pieces) gets the unit embedding e_k; no other
// token has any weight on the chain dimensions 0..len(chain)-1, in the
// embeddings or in the output rows, so at a chain token every logit is
// zero except its successor's, which is ScriptLogit.
func script(o Options, vocab int, embd, out []float32) {
	base := VocabularySize()
	chain := len(o.Script) + 1 // ids base..base+len(o.Script)
	row := func(m []float32, id int) []float32 { return m[id*o.Width : (id+1)*o.Width] }
	for id := range vocab {
		clear(row(embd, id)[:chain])
		clear(row(out, id)[:chain])
	}
	// RMS norm scales a unit vector by 1/sqrt(1/width + eps).
	scale := math.Sqrt(1/float64(o.Width) + 1e-5)
	for k := range chain {
		e := row(embd, base+k)
		clear(e)
		e[k] = 1
		next := EOSID
		if k+1 < chain {
			next = base + k + 1
		}
		row(out, next)[k] = float32(ScriptLogit * scale)
	}
}

// f32s writes its values as little-endian float32.
type f32s []float32

func (d f32s) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	n, err := w.Write(buf)
	return int64(n), err
}
