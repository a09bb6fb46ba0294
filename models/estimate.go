package models

import (
	"fmt"
	"slices"
	"strings"
)

// How much memory a model needs once Ollama has loaded it.
//
// The estimate follows the accounting of Ollama v0.17.4 (the version sovra
// pins), so that sovra's placement agrees with what Ollama itself will fit:
// llm/server.go (llamaServer.Load, buildLayout, assignLayers, findBestFit,
// greedyFit, TotalSize), fs/ggml/ggml.go (GraphSize, kvCacheBytesPerElement)
// and ml/device.go (MinimumMemory). Ollama splits a model by layers; a
// model is blocks 0..L-1 plus one output layer. Its parts:
//
// Weights. The GGUF's tensors: FileSize (or Parameters x bits per weight).
// A mixture of experts keeps every expert resident, so the total counts,
// not the active parameters.
// llama.cpp keeps the input token embedding (vocab x embedding) in host
// memory, so it is reported apart as HostWeights, at the file's average
// bytes per parameter; the output layer is the output projection (the
// embedding matrix itself when tied); the rest is spread evenly over the
// blocks. Ollama's llama.cpp runner leaves the input embedding out of the
// size it reports; its own engine (the architectures in ollamaEngineArchs)
// counts it, and so does Total for those.
//
// KV cache. Ollama allocates it for num_ctx x num_parallel tokens:
//
//	KV bytes = 2 (K and V) x layers x kv_heads x head_dim x context x parallel x bytes_per_element
//
// written per layer as kv_heads x (key_length + value_length) x tokens x
// bytes, since key and value sizes may differ (DeepSeek: 192 and 128).
// Llama 3.1 8B at 8192 tokens in f16: 2 x 32 x 8 x 128 x 8192 x 2 bytes
// = 1 GiB. With multi-head latent attention one latent of KVLatentDim
// elements replaces both: layers x (kv_lora_rank + qk_rope_head_dim) x
// tokens x bytes, 61 x 576 x tokens x 2 for DeepSeek-V3/R1 in f16, 71 times
// less than the 128 x (192 + 128) elements of expanded keys and values.
// Bytes per element: f16 2; q8_0 34/32 and q4_0 18/32 (ggml blocks of 32
// with a 2-byte scale). Ollama's own estimate uses 1 and 0.5 for the
// quantised types, about 6% and 12% below what ggml allocates.
//
// Graph. The compute buffers of one forward pass over a batch of num_batch
// (512, at most the context) tokens. Ollama sizes them with per-
// architecture formulas of embedding, heads, vocabulary, batch and context
// (GraphSize's "full offload" figure, see graphBytes) and charges the whole
// figure to every GPU that holds layers (a larger "partial offload" figure
// when some layers stay on the host, which Estimate does not model). Ollama
// does not count a graph for a model on the host alone, and neither does
// Estimate.
//
// Runtime. Each GPU that holds layers loses GPUReserve (457 MiB, Ollama's
// MinimumMemory for CUDA and ROCm: the CUDA context and library
// workspaces) plus EstimateOptions.GPUOverhead (OLLAMA_GPU_OVERHEAD).
// Ollama leaves it out of the size it reports but subtracts it from a
// GPU's free memory before placing layers; Estimate counts it in Overhead
// and Total.
//
// Split. As Ollama does for its llama.cpp runner, Estimate first takes the
// size of block 0 (weights and cache) off every GPU's free memory as
// headroom, then packs the layers
// onto as few GPUs as possible, largest free memory first, balancing over
// the GPUs it does use by the smallest fraction of their free memory that
// still places every layer, the last layers going to the last GPU. A GPU
// that ends up holding layers then has its graph reserved and the layout is
// redone until the set of GPUs stops growing. Layers that fit nowhere stay
// in host memory (the output layer first, as Ollama prefers to offload
// blocks).
//
// internal/e2e/vram_test.go checks the weights, cache and graph against
// the pinned Ollama's code on generated GGUF files, and the total against
// the size a running Ollama reports; on a CPU-only build that size has no
// graph or GPU reserve, so those two rest on Ollama's source alone.

// GPUReserve is the memory Ollama sets aside on every CUDA or ROCm GPU it
// uses, beyond the model: ml.DeviceInfo.MinimumMemory in Ollama v0.17.4.
const GPUReserve = 457 << 20

// DefaultBatch is Ollama's default num_batch.
const DefaultBatch = 512

// minContext is the smallest num_ctx Ollama loads a model with.
const minContext = 4

// KVCacheType is the element type of the KV cache (OLLAMA_KV_CACHE_TYPE).
type KVCacheType string

// KV cache types Ollama accepts.
const (
	KVCacheF16  KVCacheType = "f16"
	KVCacheQ8_0 KVCacheType = "q8_0"
	KVCacheQ4_0 KVCacheType = "q4_0"
)

// ParseKVCacheType parses an OLLAMA_KV_CACHE_TYPE value; "" means f16.
func ParseKVCacheType(s string) (KVCacheType, error) {
	switch t := KVCacheType(strings.ToLower(strings.TrimSpace(s))); t {
	case "", KVCacheF16:
		return KVCacheF16, nil
	case KVCacheQ8_0, KVCacheQ4_0:
		return t, nil
	}
	return "", fmt.Errorf("models: unknown KV cache type %q (want f16, q8_0 or q4_0)", s)
}

// bytesPerElement returns the bytes of one cache element as num/den. An
// unknown type counts as f16, as in Ollama.
func (t KVCacheType) bytesPerElement() (num, den uint64) {
	switch t {
	case KVCacheQ8_0:
		return 34, 32
	case KVCacheQ4_0:
		return 18, 32
	}
	return 2, 1
}

// EstimateOptions describe how the model is loaded. Zero fields take the
// defaults noted.
type EstimateOptions struct {
	// Context is num_ctx, the context of each slot (default: the model's
	// native context). It is capped at the native context, as Ollama caps
	// it, and at MaxContext.
	Context int
	// MaxContext, when positive, caps Context (an operator limit).
	MaxContext int
	// Parallel is the number of slots (OLLAMA_NUM_PARALLEL, default 1);
	// the cache holds Context x Parallel tokens.
	Parallel int
	// KVCache is the cache element type (default f16).
	KVCache KVCacheType
	// Batch is num_batch (default DefaultBatch).
	Batch int
	// GPUs holds the free memory of each GPU of the node, in bytes; none
	// means the model runs from host memory.
	GPUs []uint64
	// GPUOverhead is reserved on every GPU used (OLLAMA_GPU_OVERHEAD).
	GPUOverhead uint64
}

// MemoryEstimate is the memory a model needs, in bytes, in total and per
// GPU. Total = Weights + KV + Overhead (+ HostWeights for models Ollama runs
// on its own engine), and the GPU shares plus Host add up to Total.
type MemoryEstimate struct {
	Model    string
	Context  int // per slot, after defaults and caps
	Parallel int
	Batch    int
	KVCache  KVCacheType
	// OllamaEngine is set for architectures Ollama v0.17.4 runs on its
	// own engine rather than llama.cpp's runner.
	OllamaEngine bool

	// Weights are the weights loaded as layers: blocks and output.
	Weights uint64
	// HostWeights is the input token embedding, kept in host memory.
	HostWeights uint64
	// KV is the KV cache for Context x Parallel tokens.
	KV uint64
	// Graph is the compute buffers, summed over the GPUs used.
	Graph uint64
	// Runtime is GPUReserve plus GPUOverhead, summed over the GPUs used.
	Runtime uint64
	// Overhead is Graph + Runtime.
	Overhead uint64
	// Total is everything the model needs.
	Total uint64

	// Layers is the number of layers Ollama places: blocks plus output.
	Layers int
	// GPULayers is how many of them are on GPUs.
	GPULayers int
	// GPUs has one share per GPU in EstimateOptions.GPUs, in that order.
	GPUs []GPUShare
	// Host is the part of Total in host memory: layers left there and,
	// for Ollama's engine, HostWeights.
	Host uint64
	// Fits is set when every layer is on a GPU.
	Fits bool
}

// GPUShare is what one GPU holds.
type GPUShare struct {
	// Index is the GPU's position in EstimateOptions.GPUs.
	Index int
	// Free is the free memory the estimate was given for it.
	Free uint64
	// Layers is how many layers it holds; FirstLayer and LastLayer bound
	// them (-1 when it holds none; the output layer is number Layers of
	// the model, one past the last block).
	Layers, FirstLayer, LastLayer int
	// Weights, KV, Graph and Runtime are as in MemoryEstimate; Total is
	// their sum.
	Weights, KV, Graph, Runtime, Total uint64
}

// ollamaEngineArchs are the architectures Ollama v0.17.4 always runs on its
// own engine (fs/ggml KV.OllamaEngineRequired); the rest go to llama.cpp's
// runner.
var ollamaEngineArchs = []string{
	"bert", "deepseek2", "deepseekocr", "gemma3", "gemma3n", "gptoss", "gpt-oss",
	"llama4", "mistral3", "mllama", "nemotron_h", "nemotron_h_moe", "nomic-bert",
	"olmo3", "qwen25vl", "qwen3", "qwen3moe", "qwen35", "qwen35moe", "qwen3next",
	"qwen3vl", "qwen3vlmoe", "glm4moelite", "glmocr", "lfm2", "lfm2moe",
}

// Estimate returns the memory m needs when loaded as opts describe. m is
// expected to be valid (Model.Validate).
func Estimate(m Model, opts EstimateOptions) MemoryEstimate {
	e := MemoryEstimate{
		Model:        m.Name,
		Context:      effectiveContext(m, opts),
		Parallel:     max(opts.Parallel, 1),
		KVCache:      opts.KVCache,
		OllamaEngine: slices.Contains(ollamaEngineArchs, m.Architecture),
	}
	if e.KVCache == "" {
		e.KVCache = KVCacheF16
	}
	e.Batch = opts.Batch
	if e.Batch <= 0 {
		e.Batch = DefaultBatch
	}
	e.Batch = min(e.Batch, e.Context)
	tokens := uint64(e.Context) * uint64(e.Parallel)

	// Weights, split into blocks, the output layer and the input embedding.
	blocks := max(m.Layers, 0)
	total := m.WeightBytes()
	var embed uint64
	if m.Vocab > 0 && m.Parameters > 0 {
		embed = min(mulDiv(uint64(m.Vocab)*uint64(m.Embedding), total, m.Parameters), total)
	}
	device := total
	if !m.TiedEmbeddings {
		e.HostWeights = embed
		device -= embed
	}
	output := min(embed, device)
	var perBlock uint64
	if blocks > 0 {
		perBlock = (device - output) / uint64(blocks)
	}
	output = device - perBlock*uint64(blocks) // the remainder of the division too
	e.Weights = device

	// KV cache, per block.
	num, den := e.KVCache.bytesPerElement()
	kvBlock := mulDiv(m.KVElementsPerToken()*tokens, num, den)
	e.KV = kvBlock * uint64(blocks)

	// Layer sizes as Ollama lays them out: blocks, then the output layer.
	e.Layers = blocks + 1
	sizes := make([]uint64, e.Layers)
	for i := range blocks {
		sizes[i] = perBlock + kvBlock
	}
	sizes[blocks] = output
	layerWeights := func(i int) uint64 {
		if i == blocks {
			return output
		}
		return perBlock
	}
	layerKV := func(i int) uint64 {
		if i == blocks {
			return 0
		}
		return kvBlock
	}

	graph := graphBytes(m, uint64(e.Batch), tokens, e.KV)
	runtime := uint64(GPUReserve) + opts.GPUOverhead
	where := layout(sizes, opts.GPUs, runtime, graph)

	e.GPUs = make([]GPUShare, len(opts.GPUs))
	for g, free := range opts.GPUs {
		e.GPUs[g] = GPUShare{Index: g, Free: free, FirstLayer: -1, LastLayer: -1}
	}
	for i, g := range where {
		if g < 0 {
			e.Host += layerWeights(i) + layerKV(i)
			continue
		}
		s := &e.GPUs[g]
		if s.Layers == 0 {
			s.FirstLayer = i
			s.Graph, s.Runtime = graph, runtime
		}
		s.Layers++
		s.LastLayer = i
		s.Weights += layerWeights(i)
		s.KV += layerKV(i)
		e.GPULayers++
	}
	for g := range e.GPUs {
		s := &e.GPUs[g]
		s.Total = s.Weights + s.KV + s.Graph + s.Runtime
		e.Graph += s.Graph
		e.Runtime += s.Runtime
	}
	e.Overhead = e.Graph + e.Runtime
	e.Total = e.Weights + e.KV + e.Overhead
	if e.OllamaEngine {
		e.Total += e.HostWeights
		e.Host += e.HostWeights
	}
	e.Fits = len(opts.GPUs) > 0 && e.GPULayers == e.Layers
	return e
}

// effectiveContext applies the defaults and caps of EstimateOptions.Context.
func effectiveContext(m Model, opts EstimateOptions) int {
	ctx := opts.Context
	if ctx <= 0 {
		ctx = m.ContextLength
	}
	if m.ContextLength > 0 {
		ctx = min(ctx, m.ContextLength)
	}
	if opts.MaxContext > 0 {
		ctx = min(ctx, opts.MaxContext)
	}
	return max(ctx, minContext)
}

// graphBytes returns the compute-buffer size Ollama v0.17.4 charges each
// GPU for m (fs/ggml GGML.GraphSize, the full-offload figure), for a batch
// of b tokens over c cached tokens (context x parallel); kvTotal is the
// whole cache. The formulas are Ollama's, per GGUF architecture (e
// embedding, h heads, hkv KV heads, hk key length, v vocabulary):
//
//	llama      max(4b(1 + 4e + c(1+h)), 4b(e + v))
//	qwen2      max(4b(e + v), 4b(1 + 2e + c + ch))
//	gemma2     max(4b(e + v), 4b(2 + c + ch + 2e + 2hk*h))
//	deepseek2  max(4b(3e + v), 4b(3e + 2 + c(1+hkv) + 2hk*hkv)), hk being
//	           the latent in a GGUF with latent attention (one KV head)
//	others     (h/hkv) x kvTotal / 6, Ollama's fallback
//
// The llama form covers Mistral, Mixtral and Codestral, which load as
// "llama". Architectures on Ollama's own engine (qwen3, deepseek2, ...)
// have their graph measured by the runner at load time; for them this is
// the closest figure Ollama's static estimate offers.
func graphBytes(m Model, b, c, kvTotal uint64) uint64 {
	e, h, hkv := uint64(m.Embedding), uint64(m.Heads), uint64(m.KVHeads)
	hk, v := uint64(m.HeadDimK), uint64(max(m.Vocab, 0))
	switch m.Architecture {
	case "llama":
		return max(4*b*(1+4*e+c*(1+h)), 4*b*(e+v))
	case "qwen2":
		return max(4*b*(e+v), 4*b*(1+2*e+c+c*h))
	case "gemma2":
		return max(4*b*(e+v), 4*b*(2+c+c*h+2*e+2*hk*h))
	case "deepseek2":
		// A GGUF that spells latent attention out has one KV head whose
		// key is the latent: Ollama reads attention.key_length, the
		// latent, where HeadDimK holds the per-head key_length_mla.
		if m.KVLatentDim > 0 && hkv == 1 {
			hk = uint64(m.KVLatentDim)
		}
		return max(4*b*(3*e+v), 4*b*(3*e+2+c*(1+hkv)+2*hk*hkv))
	}
	if hkv == 0 {
		hkv = 1
	}
	return h / hkv * kvTotal / 6
}

// layout returns, for each layer, the index of the GPU that holds it, or -1
// for host memory. sizes are the layers' weights plus cache; free is each
// GPU's free memory; reserve is taken off every GPU, and graph off every
// GPU that ends up holding layers.
func layout(sizes, free []uint64, reserve, graph uint64) []int {
	where := make([]int, len(sizes))
	for i := range where {
		where[i] = -1
	}
	if len(free) == 0 || len(sizes) == 0 {
		return where
	}
	// Largest free memory first; ties keep the node's order.
	order := make([]int, len(free))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case free[a] > free[b]:
			return -1
		case free[a] < free[b]:
			return 1
		}
		return 0
	})
	headroom := sizes[0] // block 0, weights and cache
	withGraph := make([]bool, len(free))
	for range len(free) + 1 {
		avail := make([]uint64, len(free))
		for g, f := range free {
			take := headroom + reserve
			if withGraph[g] {
				take += graph
			}
			if f > take {
				avail[g] = f - take
			}
		}
		where = assignLayers(sizes, avail, order)
		grew := false
		for _, g := range where {
			if g >= 0 && !withGraph[g] {
				withGraph[g], grew = true, true
			}
		}
		if !grew {
			break
		}
	}
	return where
}

// assignLayers packs the layers onto the fewest GPUs of order that hold
// them all; failing that it leaves the output layer on the host and
// offloads as many blocks as fit.
func assignLayers(sizes, avail []uint64, order []int) []int {
	if where := fewestGPUs(sizes, avail, order); placed(where) == len(sizes) {
		return where
	}
	return append(fewestGPUs(sizes[:len(sizes)-1], avail, order), -1)
}

// fewestGPUs tries the first GPU of order, then the first two, and so on,
// until the layers all fit; it returns the last attempt.
func fewestGPUs(sizes, avail []uint64, order []int) []int {
	var where []int
	for k := 1; k <= len(order); k++ {
		where = bestFit(sizes, avail, order[:k])
		if placed(where) == len(sizes) {
			break
		}
	}
	return where
}

// bestFit places as many of the top layers as the GPUs hold, using the
// smallest fraction of each GPU's available memory that still places that
// many, which spreads the layers over the GPUs in proportion to their
// memory.
func bestFit(sizes, avail []uint64, gpus []int) []int {
	best := greedyFit(sizes, avail, gpus, 1)
	most := placed(best)
	if most == 0 {
		return best
	}
	lo, hi := 0.0, 1.0
	for hi-lo > 1e-6 {
		mid := (lo + hi) / 2
		if w := greedyFit(sizes, avail, gpus, mid); placed(w) == most {
			hi, best = mid, w
		} else {
			lo = mid
		}
	}
	return best
}

// greedyFit walks the layers from the last down, filling the last GPU of
// gpus with up to capacity of its available memory, then the one before,
// and stops at the first layer that fits nowhere left.
func greedyFit(sizes, avail []uint64, gpus []int, capacity float64) []int {
	where := make([]int, len(sizes))
	for i := range where {
		where[i] = -1
	}
	d := len(gpus) - 1
	space := uint64(float64(avail[gpus[d]]) * capacity)
	for i := len(sizes) - 1; i >= 0; i-- {
		for sizes[i] > space {
			if d--; d < 0 {
				return where
			}
			space = uint64(float64(avail[gpus[d]]) * capacity)
		}
		where[i] = gpus[d]
		space -= sizes[i]
	}
	return where
}

// placed counts the layers on a GPU.
func placed(where []int) int {
	n := 0
	for _, g := range where {
		if g >= 0 {
			n++
		}
	}
	return n
}
