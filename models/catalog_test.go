package models

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestLookupForms(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"short", "deepseek-r1:70b", "deepseek-r1:70b"},
		{"library namespace", "library/deepseek-r1:70b", "deepseek-r1:70b"},
		{"registry host", "registry.ollama.ai/library/deepseek-r1:70b", "deepseek-r1:70b"},
		{"registry with scheme", "https://registry.ollama.ai/library/deepseek-r1:70b", "deepseek-r1:70b"},
		{"upper case", "DeepSeek-R1:70B", "deepseek-r1:70b"},
		{"upper case host", "Registry.Ollama.AI/Library/DEEPSEEK-R1:70b", "deepseek-r1:70b"},
		{"surrounding space", "  deepseek-r1:70b\t", "deepseek-r1:70b"},
		{"no tag is latest", "deepseek-r1", "deepseek-r1:8b"},
		{"explicit latest", "deepseek-r1:latest", "deepseek-r1:8b"},
		{"no tag with namespace", "library/deepseek-r1", "deepseek-r1:8b"},
		{"no tag with host", "registry.ollama.ai/library/deepseek-r1", "deepseek-r1:8b"},
		{"deepseek-v3 latest", "deepseek-v3", "deepseek-v3:671b"},
		{"mixtral latest", "mixtral", "mixtral:8x7b"},
		{"mixtral 8x22b", "mixtral:8x22b", "mixtral:8x22b"},
		{"mistral latest", "mistral", "mistral:7b"},
		{"nemo latest", "mistral-nemo", "mistral-nemo:12b"},
		{"small latest", "mistral-small", "mistral-small:24b"},
		{"large latest", "mistral-large", "mistral-large:123b"},
		{"codestral latest", "codestral", "codestral:22b"},
		{"llama3.1 latest", "llama3.1", "llama3.1:8b"},
		{"llama3.2 latest", "llama3.2:latest", "llama3.2:3b"},
		{"llama3.3 latest", "llama3.3", "llama3.3:70b"},
		{"qwen2.5 latest", "qwen2.5", "qwen2.5:7b"},
		{"gemma2 latest", "gemma2", "gemma2:9b"},
		{"quantisation alias", "llama3.1:8b-instruct-q4_K_M", "llama3.1:8b"},
		{"alias in other case", "DEEPSEEK-R1:8B-0528-QWEN3-Q4_K_M", "deepseek-r1:8b"},
		{"distill alias", "library/deepseek-r1:70b-llama-distill-q4_K_M", "deepseek-r1:70b"},
		{"llama 8b distill keeps its case", "deepseek-r1:8b-llama-distill-q4_k_m", "deepseek-r1:8b-llama-distill-q4_K_M"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := Lookup(c.in)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing, want %s", c.in, c.want)
			}
			if m.Name != c.want {
				t.Fatalf("Lookup(%q) = %s, want %s", c.in, m.Name, c.want)
			}
		})
	}
}

func TestLookupUnknown(t *testing.T) {
	cases := []struct{ name, in string }{
		{"unknown tag", "deepseek-r1:9b"},
		{"unknown family", "no-such-model"},
		{"unknown family latest", "no-such-model:latest"},
		{"other namespace", "someone/deepseek-r1:70b"},
		{"other host", "example.com/library/deepseek-r1:70b"},
		{"empty", ""},
		{"blank", "   "},
		{"empty tag", "deepseek-r1:"},
		{"too many parts", "a/b/c/deepseek-r1:70b"},
		{"inner space", "deepseek r1:70b"},
		{"empty path part", "library//deepseek-r1:70b"},
		{"digest form", "deepseek-r1@sha256:abc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if m, ok := Lookup(c.in); ok {
				t.Fatalf("Lookup(%q) = %s, want nothing", c.in, m.Name)
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Deepseek-R1", "deepseek-r1:latest"},
		{"registry.ollama.ai/library/qwen2.5:7B", "qwen2.5:7b"},
		{"acme/coder", "acme/coder:latest"},
		{"registry.ollama.ai/acme/coder:v2", "acme/coder:v2"},
		{"localhost:5000/acme/coder:v2", "localhost:5000/acme/coder:v2"},
		{"hf.co/Org/Model-GGUF:Q4_K_M", "hf.co/org/model-gguf:q4_k_m"},
	}
	for _, c := range cases {
		got, err := NormalizeName(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "a:", "a b", "x/y/z/w"} {
		if got, err := NormalizeName(in); !errors.Is(err, ErrInvalidName) {
			t.Errorf("NormalizeName(%q) = %q, %v; want ErrInvalidName", in, got, err)
		}
	}
}

// TestCatalogCoverage pins the built-in entries the placement work relies
// on, with the figures that distinguish them.
func TestCatalogCoverage(t *testing.T) {
	cases := []struct {
		name, arch, base string
		layers, kvHeads  int
		params, active   uint64
	}{
		{"deepseek-v3:671b", "deepseek2", "", 61, 128, 671e9, 37e9},
		{"deepseek-r1:671b", "deepseek2", "", 61, 128, 671e9, 37e9},
		{"deepseek-r1:1.5b", "qwen2", "Qwen2.5-Math-1.5B", 28, 2, 1.78e9, 0},
		{"deepseek-r1:7b", "qwen2", "Qwen2.5-Math-7B", 28, 4, 7.62e9, 0},
		{"deepseek-r1:8b-llama-distill-q4_K_M", "llama", "Llama-3.1-8B", 32, 8, 8.03e9, 0},
		{"deepseek-r1:8b", "qwen3", "Qwen3-8B", 36, 8, 8.19e9, 0},
		{"deepseek-r1:14b", "qwen2", "Qwen2.5-14B", 48, 8, 14.8e9, 0},
		{"deepseek-r1:32b", "qwen2", "Qwen2.5-32B", 64, 8, 32.8e9, 0},
		{"deepseek-r1:70b", "llama", "Llama-3.3-70B-Instruct", 80, 8, 70.6e9, 0},
		{"mistral:7b", "llama", "", 32, 8, 7.25e9, 0},
		{"mistral-nemo:12b", "llama", "", 40, 8, 12.2e9, 0},
		{"mistral-small:24b", "llama", "", 40, 8, 23.6e9, 0},
		{"mistral-large:123b", "llama", "", 88, 8, 123e9, 0},
		{"mixtral:8x7b", "llama", "", 32, 8, 46.7e9, 12.9e9},
		{"mixtral:8x22b", "llama", "", 56, 8, 141e9, 39e9},
		{"codestral:22b", "llama", "", 56, 8, 22.2e9, 0},
		{"llama3.1:8b", "llama", "", 32, 8, 8.03e9, 0},
		{"llama3.1:70b", "llama", "", 80, 8, 70.6e9, 0},
		{"llama3.1:405b", "llama", "", 126, 8, 405.9e9, 0},
		{"llama3.2:1b", "llama", "", 16, 8, 1.24e9, 0},
		{"llama3.2:3b", "llama", "", 28, 8, 3.21e9, 0},
		{"llama3.3:70b", "llama", "", 80, 8, 70.6e9, 0},
		{"qwen2.5:0.5b", "qwen2", "", 24, 2, 494e6, 0},
		{"qwen2.5:7b", "qwen2", "", 28, 4, 7.62e9, 0},
		{"qwen2.5:72b", "qwen2", "", 80, 8, 72.7e9, 0},
		{"gemma2:2b", "gemma2", "", 26, 4, 2.61e9, 0},
		{"gemma2:9b", "gemma2", "", 42, 8, 9.24e9, 0},
		{"gemma2:27b", "gemma2", "", 46, 16, 27.2e9, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := Lookup(c.name)
			if !ok {
				t.Fatalf("%s is not built in", c.name)
			}
			if m.Architecture != c.arch || m.BaseModel != c.base || m.Layers != c.layers || m.KVHeads != c.kvHeads ||
				m.Parameters != c.params || m.ActiveParameters != c.active {
				t.Fatalf("%s = arch %s base %q layers %d kv %d params %d active %d; want %s %q %d %d %d %d",
					c.name, m.Architecture, m.BaseModel, m.Layers, m.KVHeads, m.Parameters, m.ActiveParameters,
					c.arch, c.base, c.layers, c.kvHeads, c.params, c.active)
			}
		})
	}
}

func TestBuiltinEntries(t *testing.T) {
	all := Builtin()
	if len(all) < 30 {
		t.Fatalf("%d built-in entries, want at least 30", len(all))
	}
	families := map[string]bool{}
	for _, m := range all {
		families[m.Family] = true
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
		if m.FileSize == 0 || m.Quantization == "" || m.License == "" || !strings.Contains(m.Source, "ollama.com/library/") {
			t.Errorf("%s: size %d, quantisation %q, licence %q, source %q: want all set, the source naming the library page",
				m.Name, m.FileSize, m.Quantization, m.License, m.Source)
		}
		// A GGUF is its parameters at the quantisation's rate, give or
		// take the higher-precision tensors and the metadata, which weigh
		// most in the smallest models (qwen2.5:0.5b: 1.31).
		bpw, ok := BitsPerWeight(m.Quantization)
		if !ok {
			t.Errorf("%s: unknown quantisation %q", m.Name, m.Quantization)
			continue
		}
		if r := float64(m.FileSize) / (float64(m.Parameters) * bpw / 8); r < 0.85 || r > 1.35 {
			t.Errorf("%s: file %d bytes is %.2f times %d parameters at %.2f bits", m.Name, m.FileSize, r, m.Parameters, bpw)
		}
		if (m.KVLatentDim > 0) != (m.Architecture == "deepseek2") {
			t.Errorf("%s: KV latent %d for architecture %s", m.Name, m.KVLatentDim, m.Architecture)
		}
		if m.IsMoE() != (m.ActiveParameters > 0) {
			t.Errorf("%s: %d experts but %d active parameters", m.Name, m.Experts, m.ActiveParameters)
		}
	}
	for family := range families {
		if _, ok := Lookup(family); !ok {
			t.Errorf("family %s has no latest", family)
		}
	}
	if m, _ := Lookup("deepseek-r1:671b"); m.KVLatentDim != 512+64 {
		t.Errorf("deepseek-r1:671b KV latent = %d, want kv_lora_rank 512 + rope 64", m.KVLatentDim)
	}
	if m, _ := Lookup("deepseek-r1:70b"); m.FileSize != 43_000_000_000 {
		t.Errorf("deepseek-r1:70b file size = %d, want the library's 43 GB", m.FileSize)
	}
}

func TestLookupReturnsACopy(t *testing.T) {
	m, _ := Lookup("llama3.1:8b")
	m.Aliases[0] = "changed"
	m.Layers = 1
	again, _ := Lookup("llama3.1:8b")
	if again.Aliases[0] == "changed" || again.Layers != 32 {
		t.Fatalf("changing a looked-up model changed the catalog: %+v", again)
	}
}

// validModel is a model every register case starts from.
func validModel() Model {
	return Model{
		Name: "acme/coder:7b", Architecture: "llama",
		Parameters: 7_000_000_000, Quantization: "Q4_K_M", FileSize: 4_200_000_000,
		Layers: 32, Embedding: 4096, Heads: 32, KVHeads: 8, HeadDimK: 128, HeadDimV: 128,
		Vocab: 32000, ContextLength: 16384,
	}
}

func TestRegisterValidation(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Model)
		want   error
	}{
		{"valid", func(*Model) {}, nil},
		{"valid without file size", func(m *Model) { m.FileSize = 0 }, nil},
		{"valid MoE", func(m *Model) { m.Experts, m.ExpertsUsed, m.ActiveParameters = 8, 2, 2e9 }, nil},
		{"empty name", func(m *Model) { m.Name = "" }, ErrInvalidName},
		{"bad name", func(m *Model) { m.Name = "acme/co der" }, ErrInvalidName},
		{"no architecture", func(m *Model) { m.Architecture = "" }, ErrInvalidModel},
		{"zero parameters", func(m *Model) { m.Parameters = 0 }, ErrInvalidModel},
		{"active above total", func(m *Model) { m.Experts, m.ExpertsUsed, m.ActiveParameters = 8, 2, 8e9 }, ErrInvalidModel},
		{"zero layers", func(m *Model) { m.Layers = 0 }, ErrInvalidModel},
		{"negative layers", func(m *Model) { m.Layers = -1 }, ErrInvalidModel},
		{"zero embedding", func(m *Model) { m.Embedding = 0 }, ErrInvalidModel},
		{"zero heads", func(m *Model) { m.Heads = 0 }, ErrInvalidModel},
		{"zero kv heads", func(m *Model) { m.KVHeads = 0 }, ErrInvalidModel},
		{"kv heads not dividing heads", func(m *Model) { m.KVHeads = 5 }, ErrInvalidModel},
		{"kv heads above heads", func(m *Model) { m.KVHeads = 64 }, ErrInvalidModel},
		{"zero key size", func(m *Model) { m.HeadDimK = 0 }, ErrInvalidModel},
		{"zero value size", func(m *Model) { m.HeadDimV = 0 }, ErrInvalidModel},
		{"negative latent", func(m *Model) { m.KVLatentDim = -1 }, ErrInvalidModel},
		{"zero context", func(m *Model) { m.ContextLength = 0 }, ErrInvalidModel},
		{"negative vocabulary", func(m *Model) { m.Vocab = -1 }, ErrInvalidModel},
		{"experts used above experts", func(m *Model) { m.Experts, m.ExpertsUsed = 2, 4 }, ErrInvalidModel},
		{"experts without used", func(m *Model) { m.Experts = 8 }, ErrInvalidModel},
		{"unknown size and quantisation", func(m *Model) { m.FileSize, m.Quantization = 0, "Q9_X" }, ErrInvalidModel},
		{"embedding table above parameters", func(m *Model) { m.Vocab = 2_000_000 }, ErrInvalidModel},
		{"built-in name", func(m *Model) { m.Name = "llama3.1:8b" }, ErrExists},
		{"built-in name other form", func(m *Model) { m.Name = "registry.ollama.ai/library/LLAMA3.1:8B" }, ErrExists},
		{"built-in latest", func(m *Model) { m.Name = "gemma2" }, ErrExists},
		{"built-in alias", func(m *Model) { m.Aliases = []string{"llama3.1:8b-instruct-q4_K_M"} }, ErrExists},
		{"alias repeating the name", func(m *Model) { m.Aliases = []string{"ACME/coder:7b"} }, ErrExists},
		{"bad alias", func(m *Model) { m.Aliases = []string{"a:"} }, ErrInvalidName},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cat := NewCatalog()
			m := validModel()
			c.change(&m)
			err := cat.Register(m)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Register: %v", err)
				}
				if _, ok := cat.Lookup(m.Name); !ok {
					t.Fatalf("registered %s is not found", m.Name)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Register = %v, want %v", err, c.want)
			}
			if _, ok := cat.Lookup("acme/coder:7b"); ok {
				t.Fatal("a refused model was added")
			}
		})
	}
}

func TestRegisterAndLookup(t *testing.T) {
	cat := NewCatalog()
	m := validModel()
	m.Name = "registry.ollama.ai/Acme/Coder"
	m.Aliases = []string{"acme/coder:7b-q4_K_M"}
	if err := cat.Register(m); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"acme/coder", "Acme/Coder:latest", "registry.ollama.ai/acme/coder:latest", "ACME/CODER:7B-Q4_K_M"} {
		got, ok := cat.Lookup(in)
		if !ok || got.Name != "Acme/Coder:latest" || got.Family != "Acme/Coder" {
			t.Errorf("Lookup(%q) = %q (family %q), %v; want Acme/Coder:latest", in, got.Name, got.Family, ok)
		}
	}
	if err := cat.Register(m); !errors.Is(err, ErrExists) {
		t.Errorf("registering twice = %v, want ErrExists", err)
	}
	if _, ok := Lookup("acme/coder"); ok {
		t.Error("a model registered in one catalog shows in the package's built-ins")
	}
	if n := len(cat.Models()); n != len(Builtin())+1 {
		t.Errorf("catalog lists %d models, want the built-ins plus one", n)
	}
}

func TestCatalogConcurrentUse(t *testing.T) {
	cat := NewCatalog()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			m := validModel()
			m.Name = fmt.Sprintf("acme/coder:v%d", i)
			if err := cat.Register(m); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, ok := cat.Lookup("deepseek-r1:70b"); !ok {
				t.Error("built-in lost during registration")
			}
			_ = cat.Models()
		}()
	}
	wg.Wait()
	for i := range 8 {
		if _, ok := cat.Lookup(fmt.Sprintf("acme/coder:v%d", i)); !ok {
			t.Errorf("acme/coder:v%d missing", i)
		}
	}
}
