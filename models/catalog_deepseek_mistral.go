package models

// Built-in entries for DeepSeek and Mistral AI models.
//
// Sources, for every entry below unless its Source says otherwise:
//   - architecture: the config.json of the model on its publisher's Hugging
//     Face model card (huggingface.co/<publisher>/<model>);
//   - quantisation and file size: the Ollama library page
//     (ollama.com/library/<family>). Sizes written as a round number of GB
//     (404_000_000_000) are the library's display, which rounds to two or
//     three figures; sizes to the byte are the "size" Ollama's /api/tags
//     reports for that tag's digest, as seen in public listings.
//   - parameter counts are the published ones, rounded as published.
//
// Entries whose size is a round number were not cross-checked against a
// byte count; their quantisation is the one the library page lists for the
// size tag (Q4_0 for the older Mixtral and Codestral uploads), and an
// operator who pulls them can correct the figure from /api/tags by
// registering an entry of their own.

const (
	licenseMIT        = "MIT"
	licenseApache2    = "Apache-2.0"
	licenseLlama31    = "Llama 3.1 Community License"
	licenseLlama32    = "Llama 3.2 Community License"
	licenseLlama33    = "Llama 3.3 Community License"
	licenseQwen       = "Qwen License"
	licenseQwenResrch = "Qwen Research License"
	licenseGemma      = "Gemma Terms of Use"
	licenseMRL        = "Mistral Research License"
	licenseMNPL       = "Mistral AI Non-Production License"
	licenseDeepSeek   = "DeepSeek License Agreement (weights), MIT (code)"
)

// deepSeekMLA returns the DeepSeek-V3 architecture shared by DeepSeek-V3
// and DeepSeek-R1 (deepseek-ai/DeepSeek-V3 and DeepSeek-R1 config.json):
// 61 layers (the first 3 dense, the rest 256 routed experts + 1 shared,
// 8 routed per token), hidden 7168, 128 heads, vocabulary 129280, context
// 163840 (4096 extended 40x with YaRN). The GGUF architecture is deepseek2.
// About 671B parameters, 37B active per token; the 14B multi-token
// prediction module of the release is not in the GGUF.
//
// Attention is MLA (multi-head latent attention). Per head, keys are
// qk_nope_head_dim 128 + qk_rope_head_dim 64 = 192 wide and values
// v_head_dim 128, over 128 heads; expanded into ordinary K and V that
// would cache 128 x (192 + 128) = 40960 elements per token and layer.
// llama.cpp caches the compressed latent instead: kv_lora_rank 512 plus
// the shared rope key 64 = 576 elements per token and layer, the values
// being read back out of the same latent. KVLatentDim models that.
//
// Which cache Ollama builds depends on the GGUF: its engine takes the
// latent path only when the file has the attention.key_length_mla keys
// of newer conversions, and otherwise caches per-head keys and values.
// FromShow follows the same rule.
func deepSeekMLA(name, family, license string, size uint64) Model {
	return Model{
		Name: name, Family: family, Architecture: "deepseek2",
		Parameters: 671_000_000_000, ActiveParameters: 37_000_000_000,
		Experts: 256, ExpertsUsed: 8,
		Quantization: "Q4_K_M", FileSize: size,
		Layers: 61, Embedding: 7168, Heads: 128, KVHeads: 128, HeadDimK: 192, HeadDimV: 128,
		KVLatentDim: 512 + 64, Vocab: 129280, ContextLength: 163840,
		License: license,
	}
}

func deepSeekMistralModels() []Model {
	v3 := deepSeekMLA("deepseek-v3:671b", "deepseek-v3", licenseDeepSeek, 404_000_000_000)
	v3.Source = "config.json of deepseek-ai/DeepSeek-V3; ollama.com/library/deepseek-v3 (671b, Q4_K_M, 404GB)"
	r1 := deepSeekMLA("deepseek-r1:671b", "deepseek-r1", licenseMIT, 404_000_000_000)
	r1.Source = "config.json of deepseek-ai/DeepSeek-R1; ollama.com/library/deepseek-r1 (671b, Q4_K_M, 404GB)"

	return []Model{
		v3,
		r1,
		// DeepSeek-R1 distills: dense models fine-tuned from Qwen2.5 and
		// Llama 3 on R1's outputs. The Qwen distills keep the Qwen2
		// architecture with untied embeddings and context 131072.
		{
			Name: "deepseek-r1:1.5b", Family: "deepseek-r1", Architecture: "qwen2",
			Aliases:    []string{"deepseek-r1:1.5b-qwen-distill-q4_K_M"},
			BaseModel:  "Qwen2.5-Math-1.5B",
			Parameters: 1_780_000_000, Quantization: "Q4_K_M", FileSize: 1_117_322_768,
			Layers: 28, Embedding: 1536, Heads: 12, KVHeads: 2, HeadDimK: 128, HeadDimV: 128,
			Vocab: 151936, ContextLength: 131072,
			License: licenseMIT,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B; ollama.com/library/deepseek-r1",
		},
		{
			Name: "deepseek-r1:7b", Family: "deepseek-r1", Architecture: "qwen2",
			Aliases:    []string{"deepseek-r1:7b-qwen-distill-q4_K_M"},
			BaseModel:  "Qwen2.5-Math-7B",
			Parameters: 7_620_000_000, Quantization: "Q4_K_M", FileSize: 4_683_075_271,
			Layers: 28, Embedding: 3584, Heads: 28, KVHeads: 4, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 131072,
			License: licenseMIT,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-7B; ollama.com/library/deepseek-r1",
		},
		{
			// What deepseek-r1:8b (and :latest) serve since the R1-0528
			// update: the Qwen3-8B distill of DeepSeek-R1-0528.
			Name: "deepseek-r1:8b", Family: "deepseek-r1", Architecture: "qwen3",
			Aliases:    []string{"deepseek-r1:8b-0528-qwen3-q4_K_M"},
			BaseModel:  "Qwen3-8B",
			Parameters: 8_190_000_000, Quantization: "Q4_K_M", FileSize: 5_225_376_047,
			Layers: 36, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 151936, ContextLength: 131072,
			License: licenseMIT,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-0528-Qwen3-8B; ollama.com/library/deepseek-r1 (8b = latest, digest 6995872bfe4c)",
		},
		{
			// The original 8B distill, built on Llama-3.1-8B.
			Name: "deepseek-r1:8b-llama-distill-q4_K_M", Family: "deepseek-r1", Architecture: "llama",
			BaseModel:  "Llama-3.1-8B",
			Parameters: 8_030_000_000, Quantization: "Q4_K_M", FileSize: 4_900_000_000,
			Layers: 32, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, ContextLength: 131072,
			License: licenseMIT + "; base model under the " + licenseLlama31,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-Distill-Llama-8B; ollama.com/library/deepseek-r1 (4.9GB)",
		},
		{
			Name: "deepseek-r1:14b", Family: "deepseek-r1", Architecture: "qwen2",
			Aliases:    []string{"deepseek-r1:14b-qwen-distill-q4_K_M"},
			BaseModel:  "Qwen2.5-14B",
			Parameters: 14_800_000_000, Quantization: "Q4_K_M", FileSize: 8_988_112_040,
			Layers: 48, Embedding: 5120, Heads: 40, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 131072,
			License: licenseMIT,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-14B; ollama.com/library/deepseek-r1",
		},
		{
			Name: "deepseek-r1:32b", Family: "deepseek-r1", Architecture: "qwen2",
			Aliases:    []string{"deepseek-r1:32b-qwen-distill-q4_K_M"},
			BaseModel:  "Qwen2.5-32B",
			Parameters: 32_800_000_000, Quantization: "Q4_K_M", FileSize: 19_851_337_809,
			Layers: 64, Embedding: 5120, Heads: 40, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 131072,
			License: licenseMIT,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-32B; ollama.com/library/deepseek-r1",
		},
		{
			Name: "deepseek-r1:70b", Family: "deepseek-r1", Architecture: "llama",
			Aliases:    []string{"deepseek-r1:70b-llama-distill-q4_K_M"},
			BaseModel:  "Llama-3.3-70B-Instruct",
			Parameters: 70_600_000_000, Quantization: "Q4_K_M", FileSize: 43_000_000_000,
			Layers: 80, Embedding: 8192, Heads: 64, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, ContextLength: 131072,
			License: licenseMIT + "; base model under the " + licenseLlama33,
			Source:  "config.json of deepseek-ai/DeepSeek-R1-Distill-Llama-70B; ollama.com/library/deepseek-r1 (43GB)",
		},

		// Mistral AI. Mistral 7B, Nemo, Small, Large, Codestral and both
		// Mixtrals load as GGUF architecture "llama".
		{
			Name: "mistral:7b", Family: "mistral", Architecture: "llama",
			Aliases:    []string{"mistral:7b-instruct", "mistral:7b-instruct-v0.3-q4_K_M"},
			Parameters: 7_250_000_000, Quantization: "Q4_K_M", FileSize: 4_372_824_384,
			Layers: 32, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 32768, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of mistralai/Mistral-7B-Instruct-v0.3; ollama.com/library/mistral (v0.3, digest 6577803aa9a0)",
		},
		{
			// head_dim is 128 although 5120/32 would give 160. The card
			// states a 128k context; config.json's max_position_embeddings
			// is 1024000, which is what the GGUF (and Ollama's cap) carries.
			Name: "mistral-nemo:12b", Family: "mistral-nemo", Architecture: "llama",
			Parameters: 12_200_000_000, Quantization: "Q4_0", FileSize: 7_071_713_232,
			Layers: 40, Embedding: 5120, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 131072, ContextLength: 131072,
			License: licenseApache2,
			Source:  "config.json of mistralai/Mistral-Nemo-Instruct-2407; ollama.com/library/mistral-nemo (Q4_0, digest 994f3b8b7801)",
		},
		{
			Name: "mistral-small:24b", Family: "mistral-small", Architecture: "llama",
			Parameters: 23_600_000_000, Quantization: "Q4_K_M", FileSize: 14_000_000_000,
			Layers: 40, Embedding: 5120, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 131072, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of mistralai/Mistral-Small-24B-Instruct-2501; ollama.com/library/mistral-small (24b, 14GB)",
		},
		{
			Name: "mistral-large:123b", Family: "mistral-large", Architecture: "llama",
			Parameters: 123_000_000_000, Quantization: "Q4_K_M", FileSize: 73_000_000_000,
			Layers: 88, Embedding: 12288, Heads: 96, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 32768, ContextLength: 131072,
			License: licenseMRL,
			Source:  "config.json of mistralai/Mistral-Large-Instruct-2407; ollama.com/library/mistral-large (123b, 73GB)",
		},
		{
			// 8 experts of which 2 per token; the attention and embeddings
			// are shared, hence 46.7B total rather than 8 x 7B.
			Name: "mixtral:8x7b", Family: "mixtral", Architecture: "llama",
			Parameters: 46_700_000_000, ActiveParameters: 12_900_000_000,
			Experts: 8, ExpertsUsed: 2,
			Quantization: "Q4_0", FileSize: 26_000_000_000,
			Layers: 32, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 32000, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of mistralai/Mixtral-8x7B-Instruct-v0.1; ollama.com/library/mixtral (8x7b, 26GB)",
		},
		{
			Name: "mixtral:8x22b", Family: "mixtral", Architecture: "llama",
			Parameters: 141_000_000_000, ActiveParameters: 39_000_000_000,
			Experts: 8, ExpertsUsed: 2,
			Quantization: "Q4_0", FileSize: 80_000_000_000,
			Layers: 56, Embedding: 6144, Heads: 48, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 32768, ContextLength: 65536,
			License: licenseApache2,
			Source:  "config.json of mistralai/Mixtral-8x22B-Instruct-v0.1; ollama.com/library/mixtral (8x22b, 80GB)",
		},
		{
			Name: "codestral:22b", Family: "codestral", Architecture: "llama",
			Parameters: 22_200_000_000, Quantization: "Q4_0", FileSize: 13_000_000_000,
			Layers: 56, Embedding: 6144, Heads: 48, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 32768, ContextLength: 32768,
			License: licenseMNPL,
			Source:  "config.json of mistralai/Codestral-22B-v0.1; ollama.com/library/codestral (22b, 13GB)",
		},
	}
}

// builtinModels returns every built-in entry.
func builtinModels() []Model {
	return append(deepSeekMistralModels(), metaQwenGemmaModels()...)
}
