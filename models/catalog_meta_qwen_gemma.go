package models

// Built-in entries for Meta Llama 3.x, Qwen2.5 and Gemma 2, from the same
// kinds of source as catalog_deepseek_mistral.go describes: config.json on
// the publisher's model card for the architecture, the Ollama library page
// (and /api/tags byte counts where known) for quantisation and size.

func metaQwenGemmaModels() []Model {
	return []Model{
		// Meta Llama 3.1 / 3.2 / 3.3 (meta-llama/Llama-3.x-*-Instruct
		// config.json): vocabulary 128256, context 131072 (rope scaled).
		{
			Name: "llama3.1:8b", Family: "llama3.1", Architecture: "llama",
			Aliases:    []string{"llama3.1:8b-instruct-q4_K_M"},
			Parameters: 8_030_000_000, Quantization: "Q4_K_M", FileSize: 4_920_753_328,
			Layers: 32, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, ContextLength: 131072,
			License: licenseLlama31,
			Source:  "config.json of meta-llama/Llama-3.1-8B-Instruct; ollama.com/library/llama3.1 (digest 46e0c10c039e)",
		},
		{
			Name: "llama3.1:70b", Family: "llama3.1", Architecture: "llama",
			Aliases:    []string{"llama3.1:70b-instruct-q4_K_M"},
			Parameters: 70_600_000_000, Quantization: "Q4_K_M", FileSize: 43_000_000_000,
			Layers: 80, Embedding: 8192, Heads: 64, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, ContextLength: 131072,
			License: licenseLlama31,
			Source:  "config.json of meta-llama/Llama-3.1-70B-Instruct; ollama.com/library/llama3.1 (70b, 43GB)",
		},
		{
			Name: "llama3.1:405b", Family: "llama3.1", Architecture: "llama",
			Aliases:    []string{"llama3.1:405b-instruct-q4_K_M"},
			Parameters: 405_900_000_000, Quantization: "Q4_K_M", FileSize: 243_000_000_000,
			Layers: 126, Embedding: 16384, Heads: 128, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, ContextLength: 131072,
			License: licenseLlama31,
			Source:  "config.json of meta-llama/Llama-3.1-405B-Instruct; ollama.com/library/llama3.1 (405b, 243GB)",
		},
		{
			// Ollama's 1b tag is a Q8_0 file, unlike the rest of the family.
			Name: "llama3.2:1b", Family: "llama3.2", Architecture: "llama",
			Aliases:    []string{"llama3.2:1b-instruct-q8_0"},
			Parameters: 1_240_000_000, Quantization: "Q8_0", FileSize: 1_321_098_329,
			Layers: 16, Embedding: 2048, Heads: 32, KVHeads: 8, HeadDimK: 64, HeadDimV: 64,
			Vocab: 128256, TiedEmbeddings: true, ContextLength: 131072,
			License: licenseLlama32,
			Source:  "config.json of meta-llama/Llama-3.2-1B-Instruct; ollama.com/library/llama3.2 (digest baf6a787fdff)",
		},
		{
			Name: "llama3.2:3b", Family: "llama3.2", Architecture: "llama",
			Aliases:    []string{"llama3.2:3b-instruct-q4_K_M"},
			Parameters: 3_210_000_000, Quantization: "Q4_K_M", FileSize: 2_019_393_189,
			Layers: 28, Embedding: 3072, Heads: 24, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, TiedEmbeddings: true, ContextLength: 131072,
			License: licenseLlama32,
			Source:  "config.json of meta-llama/Llama-3.2-3B-Instruct; ollama.com/library/llama3.2 (digest a80c4f17acd5)",
		},
		{
			Name: "llama3.3:70b", Family: "llama3.3", Architecture: "llama",
			Aliases:    []string{"llama3.3:70b-instruct-q4_K_M"},
			Parameters: 70_600_000_000, Quantization: "Q4_K_M", FileSize: 42_520_413_916,
			Layers: 80, Embedding: 8192, Heads: 64, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 128256, ContextLength: 131072,
			License: licenseLlama33,
			Source:  "config.json of meta-llama/Llama-3.3-70B-Instruct; ollama.com/library/llama3.3 (digest a6eb4748fd29)",
		},

		// Qwen2.5 instruct models (Qwen/Qwen2.5-*-Instruct config.json):
		// context 32768 natively (131072 only with YaRN, which Ollama's
		// files do not enable); the three small ones tie their embeddings.
		{
			Name: "qwen2.5:0.5b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:0.5b-instruct"},
			Parameters: 494_000_000, Quantization: "Q4_K_M", FileSize: 397_821_319,
			Layers: 24, Embedding: 896, Heads: 14, KVHeads: 2, HeadDimK: 64, HeadDimV: 64,
			Vocab: 151936, TiedEmbeddings: true, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of Qwen/Qwen2.5-0.5B-Instruct; ollama.com/library/qwen2.5 (digest a8b0c5157701)",
		},
		{
			Name: "qwen2.5:1.5b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:1.5b-instruct"},
			Parameters: 1_540_000_000, Quantization: "Q4_K_M", FileSize: 986_061_892,
			Layers: 28, Embedding: 1536, Heads: 12, KVHeads: 2, HeadDimK: 128, HeadDimV: 128,
			Vocab: 151936, TiedEmbeddings: true, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of Qwen/Qwen2.5-1.5B-Instruct; ollama.com/library/qwen2.5 (986MB)",
		},
		{
			Name: "qwen2.5:3b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:3b-instruct"},
			Parameters: 3_090_000_000, Quantization: "Q4_K_M", FileSize: 1_929_912_432,
			Layers: 36, Embedding: 2048, Heads: 16, KVHeads: 2, HeadDimK: 128, HeadDimV: 128,
			Vocab: 151936, TiedEmbeddings: true, ContextLength: 32768,
			License: licenseQwenResrch,
			Source:  "config.json of Qwen/Qwen2.5-3B-Instruct; ollama.com/library/qwen2.5 (digest 357c53fb659c)",
		},
		{
			Name: "qwen2.5:7b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:7b-instruct", "qwen2.5:7b-instruct-q4_K_M"},
			Parameters: 7_620_000_000, Quantization: "Q4_K_M", FileSize: 4_683_087_332,
			Layers: 28, Embedding: 3584, Heads: 28, KVHeads: 4, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of Qwen/Qwen2.5-7B-Instruct; ollama.com/library/qwen2.5 (digest 845dbda0ea48)",
		},
		{
			Name: "qwen2.5:14b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:14b-instruct"},
			Parameters: 14_800_000_000, Quantization: "Q4_K_M", FileSize: 8_988_124_069,
			Layers: 48, Embedding: 5120, Heads: 40, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of Qwen/Qwen2.5-14B-Instruct; ollama.com/library/qwen2.5 (digest 7cdf5a0187d5)",
		},
		{
			Name: "qwen2.5:32b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:32b-instruct"},
			Parameters: 32_800_000_000, Quantization: "Q4_K_M", FileSize: 19_851_349_669,
			Layers: 64, Embedding: 5120, Heads: 40, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 32768,
			License: licenseApache2,
			Source:  "config.json of Qwen/Qwen2.5-32B-Instruct; ollama.com/library/qwen2.5 (digest 9f13ba1299af)",
		},
		{
			Name: "qwen2.5:72b", Family: "qwen2.5", Architecture: "qwen2",
			Aliases:    []string{"qwen2.5:72b-instruct"},
			Parameters: 72_700_000_000, Quantization: "Q4_K_M", FileSize: 47_000_000_000,
			Layers: 80, Embedding: 8192, Heads: 64, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
			Vocab: 152064, ContextLength: 32768,
			License: licenseQwen,
			Source:  "config.json of Qwen/Qwen2.5-72B-Instruct; ollama.com/library/qwen2.5 (72b, 47GB)",
		},

		// Gemma 2 (google/gemma-2-*-it config.json): vocabulary 256000,
		// context 8192, tied embeddings, head_dim 256 for 2B and 9B and
		// 128 for 27B. Every other layer uses a 4096-token sliding window;
		// Ollama's estimate for the llama.cpp runner still sizes every
		// layer's cache for the full context, and so does Estimate.
		{
			Name: "gemma2:2b", Family: "gemma2", Architecture: "gemma2",
			Aliases:    []string{"gemma2:2b-instruct-q4_0"},
			Parameters: 2_610_000_000, Quantization: "Q4_0", FileSize: 1_629_518_495,
			Layers: 26, Embedding: 2304, Heads: 8, KVHeads: 4, HeadDimK: 256, HeadDimV: 256,
			Vocab: 256000, TiedEmbeddings: true, ContextLength: 8192,
			License: licenseGemma,
			Source:  "config.json of google/gemma-2-2b-it; ollama.com/library/gemma2 (digest 8ccf136fdd52)",
		},
		{
			Name: "gemma2:9b", Family: "gemma2", Architecture: "gemma2",
			Aliases:    []string{"gemma2:9b-instruct-q4_0"},
			Parameters: 9_240_000_000, Quantization: "Q4_0", FileSize: 5_400_000_000,
			Layers: 42, Embedding: 3584, Heads: 16, KVHeads: 8, HeadDimK: 256, HeadDimV: 256,
			Vocab: 256000, TiedEmbeddings: true, ContextLength: 8192,
			License: licenseGemma,
			Source:  "config.json of google/gemma-2-9b-it; ollama.com/library/gemma2 (9b, 5.4GB)",
		},
		{
			Name: "gemma2:27b", Family: "gemma2", Architecture: "gemma2",
			Aliases:    []string{"gemma2:27b-instruct-q4_0"},
			Parameters: 27_200_000_000, Quantization: "Q4_0", FileSize: 16_000_000_000,
			Layers: 46, Embedding: 4608, Heads: 32, KVHeads: 16, HeadDimK: 128, HeadDimV: 128,
			Vocab: 256000, TiedEmbeddings: true, ContextLength: 8192,
			License: licenseGemma,
			Source:  "config.json of google/gemma-2-27b-it; ollama.com/library/gemma2 (27b, 16GB)",
		},
	}
}
