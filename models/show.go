package models

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// FromShow builds a catalog entry called name from the model_info map of
// Ollama's /api/show answer (decoded from JSON, so numbers are float64 and
// arrays []any; Go integer types and json.Number are accepted too). It
// reads:
//
//	general.architecture            Architecture (required)
//	general.parameter_count         Parameters (required)
//	general.file_type               Quantization (llama_ftype number)
//	general.license                 License
//	<arch>.block_count              Layers (required)
//	<arch>.context_length           ContextLength (required)
//	<arch>.embedding_length         Embedding (required)
//	<arch>.attention.head_count     Heads (required; per-layer arrays give their maximum)
//	<arch>.attention.head_count_kv  KVHeads (default: Heads)
//	<arch>.attention.key_length     HeadDimK (default: Embedding / Heads)
//	<arch>.attention.value_length   HeadDimV (default: Embedding / Heads)
//	<arch>.vocab_size               Vocab (else the length of tokenizer.ggml.tokens)
//	<arch>.expert_count             Experts
//	<arch>.expert_used_count        ExpertsUsed
//
// A GGUF with multi-head latent attention (attention.key_length_mla and
// attention.value_length_mla set, as Ollama's engine tests for it) gets
// KVLatentDim = attention.kv_lora_rank + rope.dimension_count and its
// per-head sizes from the _mla keys; without them the per-head keys and
// values are what the cache holds, as in Ollama.
//
// model_info says nothing of the file size, active parameters or whether
// the output projection is tied to the token embedding (no "output.weight"
// among /api/show's tensors); the caller may fill those in. Without a file
// size, weights are estimated from the quantisation's bits per weight.
func FromShow(name string, info map[string]any) (Model, error) {
	return FromShowWithSize(name, info, 0)
}

// FromShowWithSize is FromShow with the model's file size (from
// /api/tags; 0 when unknown), which sizes the weights before the model is
// validated: a GGUF without general.file_type (some converters leave it
// out) has no known quantisation, and its size is then all there is.
func FromShowWithSize(name string, info map[string]any, fileSize uint64) (Model, error) {
	n, err := parseName(name)
	if err != nil {
		return Model{}, err
	}
	key := n.String()
	bad := func(format string, args ...any) (Model, error) {
		return Model{}, fmt.Errorf("%w %q: model_info: %s", ErrInvalidModel, key, fmt.Sprintf(format, args...))
	}
	arch, _ := info["general.architecture"].(string)
	if arch == "" {
		return bad("no general.architecture")
	}
	num := func(k string) (uint64, bool, error) {
		v, ok := info[k]
		if !ok || v == nil {
			return 0, false, nil
		}
		n, err := showNumber(v)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %w", k, err)
		}
		return n, true, nil
	}
	// read reads "<arch>.<k>" (or k itself for general.*), folding errors
	// into firstErr so the happy path stays flat.
	var firstErr error
	read := func(k string) (uint64, bool) {
		if !strings.HasPrefix(k, "general.") {
			k = arch + "." + k
		}
		n, ok, err := num(k)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return n, ok
	}
	need := func(k string) uint64 {
		n, ok := read(k)
		if !ok && firstErr == nil {
			firstErr = fmt.Errorf("no %s", qualify(arch, k))
		}
		return n
	}

	m := Model{
		Name:          key,
		Family:        key[:strings.LastIndexByte(key, ':')],
		Architecture:  arch,
		Parameters:    need("general.parameter_count"),
		Layers:        int(need("block_count")),
		ContextLength: int(need("context_length")),
		Embedding:     int(need("embedding_length")),
		Heads:         int(need("attention.head_count")),
		Source:        "Ollama /api/show model_info",
		FileSize:      fileSize,
	}
	if lic, ok := info["general.license"].(string); ok {
		m.License = lic
	}
	if ft, ok := read("general.file_type"); ok {
		m.Quantization = fileTypeName(ft)
	}
	m.KVHeads = m.Heads
	if n, ok := read("attention.head_count_kv"); ok {
		m.KVHeads = int(n)
	}
	headDim := 0
	if m.Heads > 0 {
		headDim = m.Embedding / m.Heads
	}
	m.HeadDimK, m.HeadDimV = headDim, headDim
	if n, ok := read("attention.key_length"); ok {
		m.HeadDimK = int(n)
	}
	if n, ok := read("attention.value_length"); ok {
		m.HeadDimV = int(n)
	}
	kMLA, okK := read("attention.key_length_mla")
	vMLA, okV := read("attention.value_length_mla")
	if okK && okV && kMLA > 0 && vMLA > 0 {
		// In an MLA GGUF, key_length is the latent (kv_lora_rank + rope)
		// and the _mla keys are the per-head sizes.
		latent := m.HeadDimK
		rank, okR := read("attention.kv_lora_rank")
		rope, okP := read("rope.dimension_count")
		if okR && okP {
			latent = int(rank + rope)
		}
		m.KVLatentDim = latent
		m.HeadDimK, m.HeadDimV = int(kMLA), int(vMLA)
	}
	if n, ok := read("vocab_size"); ok {
		m.Vocab = int(n)
	} else if toks, ok := info["tokenizer.ggml.tokens"].([]any); ok {
		// /api/show empties long arrays unless asked to be verbose.
		m.Vocab = len(toks)
	}
	if n, ok := read("expert_count"); ok {
		m.Experts = int(n)
	}
	if n, ok := read("expert_used_count"); ok {
		m.ExpertsUsed = int(n)
	}
	if firstErr != nil {
		return bad("%v", firstErr)
	}
	if err := m.Validate(); err != nil {
		return Model{}, err
	}
	return m, nil
}

func qualify(arch, k string) string {
	if strings.HasPrefix(k, "general.") {
		return k
	}
	return arch + "." + k
}

// showNumber converts a model_info value to a non-negative integer. A
// per-layer array (e.g. attention.head_count of models that vary it) gives
// its largest element, as Ollama's own estimate takes the maximum.
func showNumber(v any) (uint64, error) {
	switch x := v.(type) {
	case float64:
		if x < 0 || x != math.Trunc(x) || x > 1<<63 {
			return 0, fmt.Errorf("%v is not a count", x)
		}
		return uint64(x), nil
	case float32:
		return showNumber(float64(x))
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return showNumber(n)
		}
		f, err := x.Float64()
		if err != nil {
			return 0, err
		}
		return showNumber(f)
	case int:
		return signed(int64(x))
	case int8:
		return signed(int64(x))
	case int16:
		return signed(int64(x))
	case int32:
		return signed(int64(x))
	case int64:
		return signed(x)
	case uint:
		return uint64(x), nil
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case []any:
		var hi uint64
		for _, e := range x {
			n, err := showNumber(e)
			if err != nil {
				return 0, err
			}
			hi = max(hi, n)
		}
		if len(x) == 0 {
			return 0, fmt.Errorf("empty array")
		}
		return hi, nil
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

func signed(n int64) (uint64, error) {
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return uint64(n), nil
}
