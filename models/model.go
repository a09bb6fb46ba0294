package models

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Model describes one model as Ollama serves it: the name it goes by, the
// GGUF file it loads and the architecture figures that decide its memory.
//
// Figures follow the model's config.json (layers = num_hidden_layers, heads
// = num_attention_heads, KV heads = num_key_value_heads, head sizes =
// head_dim, embedding = hidden_size, vocabulary = vocab_size, context =
// max_position_embeddings) and, for a GGUF read through Ollama, the
// matching "<arch>.*" keys of /api/show's model_info.
type Model struct {
	// Name is the Ollama name in short form, with its tag:
	// "deepseek-r1:70b". The catalog finds it case-insensitively.
	Name string
	// Aliases are other names of the same model file, e.g. the explicit
	// quantisation tag "llama3.1:8b-instruct-q4_K_M".
	Aliases []string
	// Family is the Ollama library name without a tag: "deepseek-r1".
	Family string
	// Architecture is the GGUF general.architecture: "llama", "qwen2",
	// "qwen3", "gemma2", "deepseek2".
	Architecture string
	// BaseModel is the model a distill or fine-tune is built on, if any.
	BaseModel string

	// Parameters is the total parameter count.
	Parameters uint64
	// ActiveParameters is the count used per token by a mixture of experts;
	// zero for a dense model. Every expert stays resident, so memory
	// follows Parameters, not this.
	ActiveParameters uint64
	// Experts and ExpertsUsed are the routed experts per MoE layer and how
	// many a token uses; zero for a dense model.
	Experts, ExpertsUsed int

	// Quantization is the GGUF file type as Ollama reports it: "Q4_K_M".
	Quantization string
	// FileSize is the size of the GGUF file in bytes; zero when unknown,
	// in which case Parameters times the quantisation's bits per weight
	// stands in for it.
	FileSize uint64

	// Layers is the number of transformer blocks (block_count).
	Layers int
	// Embedding is the width of the residual stream (embedding_length).
	Embedding int
	// Heads is the number of attention (query) heads.
	Heads int
	// KVHeads is the number of key/value heads (grouped-query attention).
	KVHeads int
	// HeadDimK and HeadDimV are the key and value sizes of one head
	// (attention.key_length and attention.value_length).
	HeadDimK, HeadDimV int
	// KVLatentDim, when non-zero, marks multi-head latent attention (MLA,
	// DeepSeek-V2/V3/R1): the cache holds one compressed latent of this
	// many elements per token and layer (kv_lora_rank + qk_rope_head_dim
	// = 512 + 64 for DeepSeek-V3) instead of keys and values per KV head.
	KVLatentDim int
	// Vocab is the vocabulary size; zero when unknown.
	Vocab int
	// TiedEmbeddings is set when the output projection reuses the token
	// embedding matrix (no separate output tensor in the GGUF).
	TiedEmbeddings bool
	// ContextLength is the native (trained) context length in tokens.
	ContextLength int

	// License names the licence of the weights.
	License string
	// Source says where the figures come from.
	Source string
}

// Errors returned by the catalog and FromShow; they are wrapped with the
// detail.
var (
	// ErrInvalidModel is returned for a model whose figures do not hold
	// together.
	ErrInvalidModel = errors.New("models: invalid model")
	// ErrInvalidName is returned for a name Ollama would not accept.
	ErrInvalidName = errors.New("models: invalid model name")
	// ErrExists is returned when registering a name already in the catalog.
	ErrExists = errors.New("models: model already in catalog")
)

// FieldError is the error of Validate: which figure of which model is
// wrong. It wraps ErrInvalidModel.
type FieldError struct {
	// Model is the model's name.
	Model string
	// Field is the Model field at fault, by its Go name ("Layers",
	// "KVHeads"); the first named when two disagree.
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v %q: %s", ErrInvalidModel, e.Model, e.Reason)
}

func (e *FieldError) Unwrap() error { return ErrInvalidModel }

// Validate checks that the figures of m hold together: positive sizes, KV
// heads that divide the heads, an active count no larger than the total, a
// known weight size. A bad name is an ErrInvalidName; bad figures are a
// *FieldError.
func (m Model) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Model: m.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if _, err := parseName(m.Name); err != nil {
		return err
	}
	switch {
	case m.Architecture == "":
		return bad("Architecture", "no architecture")
	case m.Parameters == 0:
		return bad("Parameters", "parameter count must be positive")
	case m.ActiveParameters > m.Parameters:
		return bad("ActiveParameters", "active parameters %d exceed the total %d", m.ActiveParameters, m.Parameters)
	case m.Layers <= 0:
		return bad("Layers", "layers %d must be positive", m.Layers)
	case m.Embedding <= 0:
		return bad("Embedding", "embedding length %d must be positive", m.Embedding)
	case m.Heads <= 0:
		return bad("Heads", "attention heads %d must be positive", m.Heads)
	case m.KVHeads <= 0:
		return bad("KVHeads", "KV heads %d must be positive", m.KVHeads)
	case m.Heads%m.KVHeads != 0:
		return bad("KVHeads", "KV heads %d do not divide the %d attention heads", m.KVHeads, m.Heads)
	case m.HeadDimK <= 0:
		return bad("HeadDimK", "head sizes %d/%d must be positive", m.HeadDimK, m.HeadDimV)
	case m.HeadDimV <= 0:
		return bad("HeadDimV", "head sizes %d/%d must be positive", m.HeadDimK, m.HeadDimV)
	case m.KVLatentDim < 0:
		return bad("KVLatentDim", "KV latent size %d is negative", m.KVLatentDim)
	case m.Vocab < 0:
		return bad("Vocab", "vocabulary %d is negative", m.Vocab)
	case m.ContextLength <= 0:
		return bad("ContextLength", "context length %d must be positive", m.ContextLength)
	case m.Experts < 0 || m.ExpertsUsed < 0 || m.ExpertsUsed > m.Experts:
		return bad("ExpertsUsed", "experts used %d of %d", m.ExpertsUsed, m.Experts)
	case (m.Experts > 0) != (m.ExpertsUsed > 0):
		return bad("Experts", "experts %d and experts used %d must both be set or both zero", m.Experts, m.ExpertsUsed)
	}
	w := m.WeightBytes()
	if w == 0 {
		return bad("FileSize", "no file size and unknown quantisation %q", m.Quantization)
	}
	if m.Vocab > 0 && uint64(m.Vocab)*uint64(m.Embedding) >= m.Parameters {
		return bad("Vocab", "embedding table %d x %d is not smaller than the %d parameters", m.Vocab, m.Embedding, m.Parameters)
	}
	return nil
}

// IsMoE reports whether m is a mixture of experts.
func (m Model) IsMoE() bool { return m.Experts > 0 }

// WeightBytes returns the bytes of m's weights: FileSize when known, else
// Parameters times the bits per weight of its quantisation (zero when that
// is unknown too).
func (m Model) WeightBytes() uint64 {
	if m.FileSize > 0 {
		return m.FileSize
	}
	bpw, ok := BitsPerWeight(m.Quantization)
	if !ok {
		return 0
	}
	return uint64(float64(m.Parameters) * bpw / 8)
}

// KVElementsPerToken returns how many cache elements one token takes in one
// layer: 2 (K and V) x KV heads x head size in general, written as
// KVHeads x (HeadDimK + HeadDimV) because the two sizes may differ; for MLA
// it is the latent size alone, the values being read back from the same
// latent.
func (m Model) KVElementsPerToken() uint64 {
	if m.KVLatentDim > 0 {
		return uint64(m.KVLatentDim)
	}
	return uint64(m.KVHeads) * uint64(m.HeadDimK+m.HeadDimV)
}

// clone returns m with its own copy of the alias slice.
func (m Model) clone() Model {
	m.Aliases = append([]string(nil), m.Aliases...)
	return m
}

// BitsPerWeight returns the average bits per weight of a GGUF file type as
// Ollama names it ("Q4_K_M", "F16"), case-insensitively. The single-type
// figures are exact ggml block sizes (Q4_0 stores 32 weights in 18 bytes:
// 4.5 bits); the K-quant mixes keep some tensors at a higher type, so their
// figures are approximate averages over a whole model. It is only a
// fallback for entries without a file size.
func BitsPerWeight(quant string) (float64, bool) {
	bpw, ok := bitsPerWeight[strings.ToUpper(strings.TrimSpace(quant))]
	return bpw, ok
}

var bitsPerWeight = map[string]float64{
	"F32":  32,
	"F16":  16,
	"BF16": 16,
	"Q8_0": 8.5,
	"Q6_K": 6.5625,
	"Q5_0": 5.5,
	"Q5_1": 6,
	"Q4_0": 4.5,
	"Q4_1": 5,
	// K-quant mixes: approximate whole-model averages.
	"Q5_K_M": 5.7,
	"Q5_K_S": 5.5,
	"Q4_K_M": 4.9,
	"Q4_K_S": 4.6,
	"Q3_K_L": 4.3,
	"Q3_K_M": 3.9,
	"Q3_K_S": 3.5,
	"Q2_K":   3.0,
}

// fileTypeNames maps the GGUF general.file_type values (llama.cpp's
// llama_ftype, mirrored in Ollama's fs/ggml FileType) to the names Ollama
// shows. Types without an entry are reported as "" by fileTypeName.
var fileTypeNames = map[uint64]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
	10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
	15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}

func fileTypeName(ft uint64) string { return fileTypeNames[ft] }

// mulDiv returns a*b/c without overflowing in the product; it saturates at
// the largest uint64 when the quotient does not fit, and returns 0 for c=0.
func mulDiv(a, b, c uint64) uint64 {
	if c == 0 {
		return 0
	}
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return ^uint64(0)
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}
