package ollamasim

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"
)

// Defaults applied by New when a Config or ModelConfig field is left zero.
const (
	// DefaultVersion is the Ollama version reported by /api/version.
	DefaultVersion = "0.17.4"
	// DefaultParallel mirrors OLLAMA_NUM_PARALLEL's default of one
	// generation at a time per model.
	DefaultParallel = 1
	// DefaultMaxQueue mirrors OLLAMA_MAX_QUEUE's default.
	DefaultMaxQueue = 512
	// DefaultKeepAlive is how long a model stays loaded after its last use.
	DefaultKeepAlive = 5 * time.Minute
	// DefaultContextLength is the context window of a model that sets none.
	DefaultContextLength = 4096
	// DefaultEmbeddingLength is the embedding width of a model that sets none.
	DefaultEmbeddingLength = 768
	// DefaultLayers is the block count of a model that sets none.
	DefaultLayers = 16
	// DefaultThinkingTokens is the length of a "medium" reasoning trace.
	DefaultThinkingTokens = 24
	// DefaultMaxRecords bounds the per-request log.
	DefaultMaxRecords = 10000
	// NoQueue, as a MaxQueue value, means no request may wait for a slot:
	// every request beyond the parallel slots is answered 503 at once.
	NoQueue = -1
)

// Config configures a simulated Ollama server. The zero value is usable: it
// serves DefaultModels, can pull DefaultRegistry, and generates without any
// artificial delay.
type Config struct {
	// Name identifies this server in Stats and request records, which lets a
	// test with several simulated backends tell which one served a request.
	Name string
	// Version is reported by /api/version (DefaultVersion when empty).
	Version string

	// Models are present locally at start (listed by /api/tags). Nil means
	// DefaultModels(); an empty non-nil slice means no model at all.
	Models []ModelConfig
	// Registry lists models that /api/pull can fetch in addition to Models.
	// Nil means DefaultRegistry(); an empty non-nil slice means none.
	Registry []ModelConfig

	// TTFT is the base time to first token of a generation.
	TTFT time.Duration
	// PromptTokenCost is added to the time to first token for every prompt
	// token that is not served from the prefix cache.
	PromptTokenCost time.Duration
	// CachedTokenCost is the cost of a prompt token found in the prefix
	// cache (see ModelConfig.PrefixCache); zero makes cached tokens free.
	CachedTokenCost time.Duration
	// TokensPerSecond is the generation speed; zero or less means no delay
	// between tokens.
	TokensPerSecond float64
	// Parallel is the number of generations a model runs at once
	// (OLLAMA_NUM_PARALLEL); zero means DefaultParallel.
	Parallel int
	// MaxQueue is the number of requests that may wait for a busy model
	// (OLLAMA_MAX_QUEUE); further requests get 503 at once. Zero means
	// DefaultMaxQueue, NoQueue means none may wait.
	MaxQueue int
	// LoadDuration is the time it takes to load a model on first use.
	LoadDuration time.Duration
	// KeepAlive is how long a model stays loaded when a request sets no
	// keep_alive (DefaultKeepAlive when zero, forever when negative).
	KeepAlive time.Duration
	// PullDuration is how long the download phase of /api/pull lasts.
	PullDuration time.Duration
	// ResponseTokens, when positive, fixes the natural length of every
	// answer; otherwise it is a deterministic 16 to 64 tokens.
	ResponseTokens int
	// ThinkingTokens is the length of a medium-effort reasoning trace
	// (DefaultThinkingTokens when zero); low halves it, high doubles it.
	ThinkingTokens int

	// MaxRecords bounds the request log (DefaultMaxRecords when zero); the
	// oldest records are dropped first.
	MaxRecords int
	// Faults are the faults active from the start.
	Faults Faults
	// Logger receives the server's diagnostics (slog.Default() when nil).
	Logger *slog.Logger
}

// ModelConfig describes one model. Timing and concurrency fields left zero
// inherit the server-wide values of Config.
type ModelConfig struct {
	// Name is the model name; ":latest" is implied when it has no tag.
	Name string `json:"name"`
	// Family is the architecture reported by /api/show and in details
	// ("llama" when empty, "bert" for embedding models).
	Family string `json:"family,omitempty"`
	// ParameterSize is the details.parameter_size string, e.g. "1.2B".
	ParameterSize string `json:"parameter_size,omitempty"`
	// Quantization is the details.quantization_level string, e.g. "Q8_0".
	// One that llama.cpp has no file type for (such as "unknown", what
	// Ollama says of a GGUF without general.file_type) leaves
	// general.file_type out of /api/show.
	Quantization string `json:"quantization,omitempty"`
	// Size is the size on disk in bytes, reported by /api/tags.
	Size int64 `json:"size,omitempty"`
	// VRAM is the memory the loaded model takes, reported by /api/ps as
	// size and size_vram (Size*6/5 when zero).
	VRAM int64 `json:"vram,omitempty"`
	// ContextLength is the context window (DefaultContextLength when zero).
	ContextLength int `json:"context_length,omitempty"`
	// EmbeddingLength is the width of the model's embeddings
	// (DefaultEmbeddingLength when zero).
	EmbeddingLength int `json:"embedding_length,omitempty"`
	// Layers, Heads and KVHeads are the block count and the attention
	// and key/value head counts /api/show reports (DefaultLayers,
	// EmbeddingLength/64 and Heads when zero).
	Layers  int `json:"layers,omitempty"`
	Heads   int `json:"heads,omitempty"`
	KVHeads int `json:"kv_heads,omitempty"`
	// Embedding marks an embedding-only model: it cannot chat or generate.
	Embedding bool `json:"embedding,omitempty"`
	// Thinking marks a reasoning model. Names containing "deepseek-r1" or
	// "qwen3" are reasoning models without it.
	Thinking bool `json:"thinking,omitempty"`
	// NoTools removes the "tools" capability: requests with tools get 400.
	NoTools bool `json:"no_tools,omitempty"`
	// Loaded makes the model loaded from the start (expiring after the
	// server's KeepAlive unless used).
	Loaded bool `json:"loaded,omitempty"`
	// ThinkingTokens overrides Config.ThinkingTokens.
	ThinkingTokens int `json:"thinking_tokens,omitempty"`
	// ResponseTokens overrides Config.ResponseTokens.
	ResponseTokens int `json:"response_tokens,omitempty"`
	// PrefixCache is the number of recent prompts whose prefixes the model
	// remembers: a request whose messages extend one of them pays
	// CachedTokenCost instead of PromptTokenCost for the shared prefix.
	// Zero disables the cache.
	PrefixCache int `json:"prefix_cache,omitempty"`

	TTFT            time.Duration `json:"ttft,omitempty"`
	PromptTokenCost time.Duration `json:"prompt_token_cost,omitempty"`
	CachedTokenCost time.Duration `json:"cached_token_cost,omitempty"`
	LoadDuration    time.Duration `json:"load_duration,omitempty"`
	TokensPerSecond float64       `json:"tokens_per_second,omitempty"`
	Parallel        int           `json:"parallel,omitempty"`
	MaxQueue        int           `json:"max_queue,omitempty"`
}

// DefaultModels is a small realistic set: a chat model, a reasoning model
// and an embedding model.
func DefaultModels() []ModelConfig {
	return []ModelConfig{
		{
			Name: "llama3.2:1b", Family: "llama", ParameterSize: "1.2B", Quantization: "Q8_0",
			Size: 1_321_098_329, VRAM: 2_040_109_465, ContextLength: 131072, EmbeddingLength: 2048,
		},
		{
			Name: "deepseek-r1:1.5b", Family: "qwen2", ParameterSize: "1.8B", Quantization: "Q4_K_M",
			Size: 1_117_322_599, VRAM: 1_659_012_096, ContextLength: 131072, EmbeddingLength: 1536,
			Thinking: true,
		},
		{
			Name: "nomic-embed-text:latest", Family: "nomic-bert", ParameterSize: "137M", Quantization: "F16",
			Size: 274_302_450, VRAM: 371_195_904, ContextLength: 2048, EmbeddingLength: 768,
			Embedding: true,
		},
	}
}

// DefaultRegistry lists models that can be pulled but are not present at
// start.
func DefaultRegistry() []ModelConfig {
	return []ModelConfig{
		{
			Name: "qwen3:0.6b", Family: "qwen3", ParameterSize: "751.63M", Quantization: "Q4_K_M",
			Size: 522_653_767, VRAM: 1_262_485_504, ContextLength: 40960, EmbeddingLength: 1024,
		},
		{
			Name: "llama3.1:8b", Family: "llama", ParameterSize: "8.0B", Quantization: "Q4_K_M",
			Size: 4_920_753_328, VRAM: 6_226_000_000, ContextLength: 131072, EmbeddingLength: 4096,
		},
		{
			Name: "all-minilm:latest", Family: "bert", ParameterSize: "23M", Quantization: "F16",
			Size: 45_960_996, VRAM: 60_000_000, ContextLength: 512, EmbeddingLength: 384,
			Embedding: true,
		},
	}
}

// NormalizeName returns the canonical form of a model name as Ollama
// displays it: registry and "library/" prefixes removed, ":latest" added
// when the name has no tag. It returns "" for an empty name.
func NormalizeName(name string) string {
	name = strings.TrimSpace(name)
	name = strings.TrimPrefix(name, "registry.ollama.ai/")
	name = strings.TrimPrefix(name, "library/")
	if name == "" {
		return ""
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if !strings.Contains(last, ":") {
		name += ":latest"
	}
	return name
}

// nameKey is the case-insensitive lookup key of a model name.
func nameKey(name string) string { return strings.ToLower(NormalizeName(name)) }

// isThinkingName reports whether a model name denotes a reasoning model.
func isThinkingName(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "deepseek-r1") || strings.Contains(n, "qwen3")
}

// params are the effective timing and concurrency settings of one model.
type params struct {
	ttft, promptCost, cachedCost, load time.Duration
	tps                                float64
	parallel, maxQueue                 int
	respTokens, thinkTokens            int
	prefixCache                        int
}

// resolve fills the zero fields of mc with defaults and returns the
// effective parameters that combine it with the server-wide cfg.
func resolve(cfg *Config, mc ModelConfig) (ModelConfig, params) {
	mc.Name = NormalizeName(mc.Name)
	if mc.Family == "" {
		mc.Family = "llama"
		if mc.Embedding {
			mc.Family = "bert"
		}
	}
	if mc.ParameterSize == "" {
		mc.ParameterSize = "1.0B"
	}
	if mc.Quantization == "" {
		mc.Quantization = "Q4_K_M"
	}
	if mc.Size == 0 {
		mc.Size = 1 << 30
	}
	if mc.VRAM == 0 {
		mc.VRAM = mc.Size * 6 / 5
	}
	if mc.ContextLength == 0 {
		mc.ContextLength = DefaultContextLength
	}
	if mc.EmbeddingLength == 0 {
		mc.EmbeddingLength = DefaultEmbeddingLength
	}
	if mc.Layers == 0 {
		mc.Layers = DefaultLayers
	}
	if mc.Heads == 0 {
		mc.Heads = max(1, mc.EmbeddingLength/64)
	}
	if mc.KVHeads == 0 {
		mc.KVHeads = mc.Heads
	}
	if !mc.Embedding && isThinkingName(mc.Name) {
		mc.Thinking = true
	}
	p := params{
		ttft:        pick(mc.TTFT, cfg.TTFT),
		promptCost:  pick(mc.PromptTokenCost, cfg.PromptTokenCost),
		cachedCost:  pick(mc.CachedTokenCost, cfg.CachedTokenCost),
		load:        pick(mc.LoadDuration, cfg.LoadDuration),
		tps:         pick(mc.TokensPerSecond, cfg.TokensPerSecond),
		parallel:    pick(mc.Parallel, cfg.Parallel, DefaultParallel),
		maxQueue:    pick(mc.MaxQueue, cfg.MaxQueue, DefaultMaxQueue),
		respTokens:  pick(mc.ResponseTokens, cfg.ResponseTokens),
		thinkTokens: pick(mc.ThinkingTokens, cfg.ThinkingTokens, DefaultThinkingTokens),
		prefixCache: mc.PrefixCache,
	}
	if p.maxQueue < 0 {
		p.maxQueue = 0
	}
	if p.parallel < 1 {
		p.parallel = 1
	}
	return mc, p
}

// pick returns the first non-zero value.
func pick[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

// capabilities lists what a model can do, as /api/show reports it.
func capabilities(mc ModelConfig) []string {
	if mc.Embedding {
		return []string{"embedding"}
	}
	caps := []string{"completion"}
	if !mc.NoTools {
		caps = append(caps, "tools")
	}
	if mc.Thinking {
		caps = append(caps, "thinking")
	}
	return caps
}

// digestOf is a stable sha256 hex digest derived from parts.
func digestOf(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}
