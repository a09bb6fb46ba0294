package models

import (
	"fmt"
	"testing"
)

func mustLookup(t *testing.T, name string) Model {
	t.Helper()
	m, ok := Lookup(name)
	if !ok {
		t.Fatalf("%s is not built in", name)
	}
	return m
}

const gib = 1 << 30

func TestKVCacheKnownFigures(t *testing.T) {
	llama := mustLookup(t, "llama3.1:8b")
	r1 := mustLookup(t, "deepseek-r1:671b")
	cases := []struct {
		name string
		m    Model
		opts EstimateOptions
		want uint64
	}{
		// 2 (K and V) x 32 layers x 8 KV heads x 128 x 8192 tokens x 2 bytes.
		{"llama3.1:8b 8192 f16", llama, EstimateOptions{Context: 8192}, 2 * 32 * 8 * 128 * 8192 * 2},
		{"is 1 GiB", llama, EstimateOptions{Context: 8192, KVCache: KVCacheF16}, gib},
		{"q8_0 is 34 bytes per 32", llama, EstimateOptions{Context: 8192, KVCache: KVCacheQ8_0}, gib / 2 * 34 / 32},
		{"q4_0 is 18 bytes per 32", llama, EstimateOptions{Context: 8192, KVCache: KVCacheQ4_0}, gib / 2 * 18 / 32},
		{"slots multiply the tokens", llama, EstimateOptions{Context: 2048, Parallel: 4}, gib},
		{"unknown type counts as f16", llama, EstimateOptions{Context: 8192, KVCache: "q5_1"}, gib},
		// 61 layers x (512 + 64) latent x 4096 tokens x 2 bytes.
		{"deepseek-r1 MLA", r1, EstimateOptions{Context: 4096}, 61 * 576 * 4096 * 2},
		// 42 layers x 8 x (256 + 256) x 8192 x 2.
		{"gemma2:9b head 256", mustLookup(t, "gemma2:9b"), EstimateOptions{}, 42 * 8 * 512 * 8192 * 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Estimate(c.m, c.opts).KV; got != c.want {
				t.Fatalf("KV = %d, want %d", got, c.want)
			}
		})
	}
}

func TestMLASmallerThanExpandedCache(t *testing.T) {
	r1 := mustLookup(t, "deepseek-r1:671b")
	naive := r1
	naive.KVLatentDim = 0
	opts := EstimateOptions{Context: 32768}
	mla, full := Estimate(r1, opts).KV, Estimate(naive, opts).KV
	// 128 heads x (192 + 128) = 40960 elements against 576: 71 times.
	if want := uint64(61 * 40960 * 32768 * 2); full != want {
		t.Fatalf("expanded cache %d, want %d", full, want)
	}
	if mla*70 > full {
		t.Fatalf("latent cache %d is not 70 times smaller than the expanded %d", mla, full)
	}
}

func TestContextDefaultsAndCaps(t *testing.T) {
	llama := mustLookup(t, "llama3.1:8b") // native 131072
	cases := []struct {
		name string
		opts EstimateOptions
		want int
	}{
		{"native by default", EstimateOptions{}, 131072},
		{"as asked", EstimateOptions{Context: 8192}, 8192},
		{"capped at native", EstimateOptions{Context: 1 << 20}, 131072},
		{"operator cap", EstimateOptions{MaxContext: 32768}, 32768},
		{"operator cap over a request", EstimateOptions{Context: 65536, MaxContext: 16384}, 16384},
		{"request under the cap", EstimateOptions{Context: 4096, MaxContext: 16384}, 4096},
		{"Ollama's minimum", EstimateOptions{Context: 1}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := Estimate(llama, c.opts)
			if e.Context != c.want {
				t.Fatalf("context %d, want %d", e.Context, c.want)
			}
			if e.Batch != min(DefaultBatch, c.want) || e.Parallel != 1 || e.KVCache != KVCacheF16 {
				t.Fatalf("batch %d parallel %d cache %q, want defaults", e.Batch, e.Parallel, e.KVCache)
			}
		})
	}
}

func TestParseKVCacheType(t *testing.T) {
	for in, want := range map[string]KVCacheType{"": KVCacheF16, "F16": KVCacheF16, " q8_0 ": KVCacheQ8_0, "Q4_0": KVCacheQ4_0} {
		if got, err := ParseKVCacheType(in); err != nil || got != want {
			t.Errorf("ParseKVCacheType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"q4_1", "f32", "fp16"} {
		if _, err := ParseKVCacheType(in); err == nil {
			t.Errorf("ParseKVCacheType(%q) accepted", in)
		}
	}
}

func TestEstimateMonotonic(t *testing.T) {
	gpus := [][]uint64{nil, {24 * gib}, {80 * gib, 80 * gib}}
	for _, name := range []string{"llama3.1:8b", "qwen2.5:32b", "deepseek-r1:671b", "gemma2:27b", "mixtral:8x7b", "deepseek-r1:8b"} {
		m := mustLookup(t, name)
		for _, g := range gpus {
			t.Run(fmt.Sprintf("%s/%d GPUs", name, len(g)), func(t *testing.T) {
				// The cache always grows with the context and the slots;
				// the total does too while the placement stays whole (on
				// the host, or every layer on GPUs). A model that spills
				// can need less GPU memory at a longer context, as fewer
				// layers and graphs fit, so its total is not compared.
				grows := func(what string, prev, e MemoryEstimate) {
					t.Helper()
					if e.KV <= prev.KV {
						t.Fatalf("%s: KV %d not above %d", what, e.KV, prev.KV)
					}
					whole := func(x MemoryEstimate) bool { return len(g) == 0 || x.Fits }
					if whole(prev) && whole(e) && e.Total <= prev.Total {
						t.Fatalf("%s: total %d not above %d", what, e.Total, prev.Total)
					}
				}
				var prev MemoryEstimate
				for i, ctx := range []int{512, 2048, 4096, 8192, 32768, 131072} {
					e := Estimate(m, EstimateOptions{Context: ctx, GPUs: g})
					checkShares(t, e)
					if i > 0 && e.Context > prev.Context {
						grows(fmt.Sprintf("context %d", e.Context), prev, e)
					}
					prev = e
				}
				one := Estimate(m, EstimateOptions{Context: 4096, GPUs: g})
				prev = one
				for _, slots := range []int{2, 4, 8} {
					e := Estimate(m, EstimateOptions{Context: 4096, Parallel: slots, GPUs: g})
					checkShares(t, e)
					if e.KV != uint64(slots)*one.KV {
						t.Fatalf("%d slots: KV %d, want %d x %d", slots, e.KV, slots, one.KV)
					}
					grows(fmt.Sprintf("%d slots", slots), prev, e)
					prev = e
				}
			})
		}
	}
}

// checkShares verifies the invariants every estimate keeps: the shares add
// up to the total, no GPU is given more than its free memory, and the
// layer counts agree.
func checkShares(t *testing.T, e MemoryEstimate) {
	t.Helper()
	var sum uint64
	layers := 0
	for _, g := range e.GPUs {
		if g.Total != g.Weights+g.KV+g.Graph+g.Runtime {
			t.Errorf("GPU %d total %d is not the sum of its parts", g.Index, g.Total)
		}
		if g.Layers > 0 && g.Total > g.Free {
			t.Errorf("GPU %d holds %d bytes, more than its %d free", g.Index, g.Total, g.Free)
		}
		if g.Layers == 0 && (g.Total != 0 || g.FirstLayer != -1) {
			t.Errorf("GPU %d holds no layers but %d bytes (first layer %d)", g.Index, g.Total, g.FirstLayer)
		}
		if g.Layers > 0 && g.LastLayer-g.FirstLayer+1 != g.Layers {
			t.Errorf("GPU %d: %d layers from %d to %d are not contiguous", g.Index, g.Layers, g.FirstLayer, g.LastLayer)
		}
		sum += g.Total
		layers += g.Layers
	}
	if sum+e.Host != e.Total {
		t.Errorf("GPU shares %d + host %d = %d, want the total %d", sum, e.Host, sum+e.Host, e.Total)
	}
	if layers != e.GPULayers || e.Fits != (len(e.GPUs) > 0 && layers == e.Layers) {
		t.Errorf("%d layers on GPUs, estimate says %d of %d, fits %v", layers, e.GPULayers, e.Layers, e.Fits)
	}
	if e.Overhead != e.Graph+e.Runtime {
		t.Errorf("overhead %d is not graph %d + runtime %d", e.Overhead, e.Graph, e.Runtime)
	}
}

func TestSplitAcrossGPUs(t *testing.T) {
	cases := []struct {
		name     string
		model    string
		ctx      int
		gpus     []uint64
		fits     bool
		usedGPUs int
	}{
		{"8b on one big GPU", "llama3.1:8b", 8192, []uint64{80 * gib}, true, 1},
		{"8b packs onto one of two", "llama3.1:8b", 8192, []uint64{24 * gib, 24 * gib}, true, 1},
		{"70b on one 80 GB", "llama3.1:70b", 8192, []uint64{80 * gib}, true, 1},
		{"70b needs two 24 GB", "llama3.1:70b", 8192, []uint64{24 * gib, 24 * gib}, true, 2},
		{"70b uses two of four 24 GB", "llama3.1:70b", 8192, []uint64{24 * gib, 24 * gib, 24 * gib, 24 * gib}, true, 2},
		{"70b prefers the larger GPU", "llama3.1:70b", 8192, []uint64{24 * gib, 80 * gib}, true, 1},
		{"70b partly on one 24 GB", "llama3.1:70b", 8192, []uint64{24 * gib}, false, 1},
		// 376 GiB of weights; each GPU also pays 8.1 GiB of graph, 457 MiB
		// of reserve and 6.2 GiB of headroom: four of eight.
		{"671b over eight H200", "deepseek-r1:671b", 32768, []uint64{141e9, 141e9, 141e9, 141e9, 141e9, 141e9, 141e9, 141e9}, true, 4},
		{"671b too big for two", "deepseek-r1:671b", 8192, []uint64{141e9, 141e9}, false, 2},
		{"GPU too small for any layer", "mistral-large:123b", 8192, []uint64{1 * gib}, false, 0},
		{"host only", "qwen2.5:7b", 8192, nil, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := Estimate(mustLookup(t, c.model), EstimateOptions{Context: c.ctx, GPUs: c.gpus})
			checkShares(t, e)
			used := 0
			for _, g := range e.GPUs {
				if g.Layers > 0 {
					used++
					if g.Graph == 0 || g.Runtime != GPUReserve {
						t.Errorf("GPU %d holds layers but graph %d, runtime %d", g.Index, g.Graph, g.Runtime)
					}
				}
			}
			if e.Fits != c.fits || used != c.usedGPUs {
				t.Fatalf("fits %v on %d GPUs, want %v on %d: %+v", e.Fits, used, c.fits, c.usedGPUs, e.GPUs)
			}
			if !e.Fits && len(c.gpus) > 0 && used > 0 {
				// Ollama keeps the output layer on the host when the model
				// does not fit.
				for _, g := range e.GPUs {
					if g.LastLayer == e.Layers-1 {
						t.Errorf("partial offload put the output layer on GPU %d", g.Index)
					}
				}
				if e.Host == 0 {
					t.Error("partial offload left nothing on the host")
				}
			}
		})
	}
}

func TestSplitBalancesLayers(t *testing.T) {
	// Two equal GPUs that each hold a bit more than half of the model get
	// about half of the layers each.
	e := Estimate(mustLookup(t, "llama3.1:70b"), EstimateOptions{Context: 8192, GPUs: []uint64{30 * gib, 30 * gib}})
	checkShares(t, e)
	a, b := e.GPUs[0].Layers, e.GPUs[1].Layers
	if !e.Fits || a == 0 || b == 0 || a-b > 2 || b-a > 2 {
		t.Fatalf("layers split %d/%d, want about even", a, b)
	}
}

func TestHostOnly(t *testing.T) {
	for _, name := range []string{"llama3.1:8b", "qwen2.5:7b", "deepseek-r1:8b", "llama3.2:3b"} {
		t.Run(name, func(t *testing.T) {
			m := mustLookup(t, name)
			e := Estimate(m, EstimateOptions{Context: 8192})
			checkShares(t, e)
			if e.Graph != 0 || e.Runtime != 0 || len(e.GPUs) != 0 || e.Fits {
				t.Fatalf("host-only estimate has graph %d, runtime %d, %d GPUs, fits %v", e.Graph, e.Runtime, len(e.GPUs), e.Fits)
			}
			want := e.Weights + e.KV
			if e.OllamaEngine {
				want += e.HostWeights
			}
			if e.Total != want || e.Host != e.Total {
				t.Fatalf("total %d host %d, want %d", e.Total, e.Host, want)
			}
			if e.Weights+e.HostWeights != m.FileSize {
				t.Fatalf("weights %d + host %d != file %d", e.Weights, e.HostWeights, m.FileSize)
			}
			if m.TiedEmbeddings != (e.HostWeights == 0) {
				t.Fatalf("tied %v but host weights %d", m.TiedEmbeddings, e.HostWeights)
			}
		})
	}
}

func TestGraphAndOverhead(t *testing.T) {
	llama := mustLookup(t, "llama3.1:8b")
	e := Estimate(llama, EstimateOptions{Context: 8192, GPUs: []uint64{80 * gib}, GPUOverhead: 1 << 28})
	// Ollama's llama figure: 4 x batch x (1 + 4e + context x (1 + heads)).
	if want := uint64(4 * 512 * (1 + 4*4096 + 8192*33)); e.Graph != want {
		t.Errorf("graph %d, want %d", e.Graph, want)
	}
	if want := uint64(GPUReserve + 1<<28); e.Runtime != want {
		t.Errorf("runtime %d, want %d", e.Runtime, want)
	}
	if e.Total != e.Weights+e.KV+e.Graph+e.Runtime {
		t.Errorf("total %d is not weights + KV + graph + runtime", e.Total)
	}
	// Two GPUs used: both pay for a graph and a reserve.
	big := Estimate(mustLookup(t, "llama3.1:70b"), EstimateOptions{Context: 8192, GPUs: []uint64{24 * gib, 24 * gib}})
	if big.Graph != 2*big.GPUs[0].Graph || big.Runtime != 2*GPUReserve {
		t.Errorf("two GPUs: graph %d runtime %d, want twice one GPU's", big.Graph, big.Runtime)
	}
	// qwen2 uses its own formula: max(4b(e+v), 4b(1+2e+c+ch)).
	q := Estimate(mustLookup(t, "qwen2.5:7b"), EstimateOptions{Context: 4096, GPUs: []uint64{80 * gib}})
	if want := uint64(max(4*512*(3584+152064), 4*512*(1+2*3584+4096+4096*28))); q.Graph != want {
		t.Errorf("qwen2 graph %d, want %d", q.Graph, want)
	}
	// deepseek2 (a GGUF with keys and values per head, as Ollama's
	// library has DeepSeek-R1): max(4b(3e+v), 4b(3e+2+c(1+hkv)+2hk*hkv)).
	r1 := Estimate(mustLookup(t, "deepseek-r1:671b"), EstimateOptions{Context: 4096, GPUs: []uint64{1 << 40}})
	if want := uint64(max(4*512*(3*7168+129280), 4*512*(3*7168+2+4096*129+2*192*128))); r1.Graph != want {
		t.Errorf("deepseek2 graph %d, want %d", r1.Graph, want)
	}
	// A short context shrinks the batch with it.
	s := Estimate(llama, EstimateOptions{Context: 256, GPUs: []uint64{80 * gib}})
	if want := uint64(max(4*256*(1+4*4096+256*33), 4*256*(4096+128256))); s.Batch != 256 || s.Graph != want {
		t.Errorf("context 256: batch %d graph %d, want 256 and %d", s.Batch, s.Graph, want)
	}
}

// TestTinyModelMatchesOllama checks the estimate for a model shaped like
// internal/tinymodel's against the size Ollama v0.17.4's llama.cpp runner
// reports on the host: every block's tensors, the output layer, and the
// cache, computed tensor by tensor as Ollama does.
func TestTinyModelMatchesOllama(t *testing.T) {
	const vocab, width, ff, layers, heads, kvHeads, ctx, slots = 354, 64, 128, 2, 4, 2, 4096, 3
	headDim := width / heads
	kvWidth := kvHeads * headDim
	block := 2*width + 2*width*width + 2*width*kvWidth + 3*width*ff // norms, q, o, k, v, gate, up, down
	embed := vocab * width
	params := uint64(layers*block + 2*embed + width)
	m := Model{
		Name: "tiny", Architecture: "llama", Parameters: params, Quantization: "F32",
		Layers: layers, Embedding: width, Heads: heads, KVHeads: kvHeads, HeadDimK: headDim, HeadDimV: headDim,
		Vocab: vocab, ContextLength: 8192,
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	e := Estimate(m, EstimateOptions{Context: ctx, Parallel: slots})
	ollamaSize := uint64(4*(layers*block+width+embed)) + uint64(layers*ctx*slots*2*kvWidth*2)
	if e.Total != ollamaSize {
		t.Fatalf("estimate %d, Ollama's accounting %d", e.Total, ollamaSize)
	}
	if e.HostWeights != uint64(4*embed) {
		t.Fatalf("host weights %d, want the token embedding's %d", e.HostWeights, 4*embed)
	}
}

// TestLayerSizes checks how the weights are divided into layers: the output
// layer is the vocabulary x embedding projection at the file's average
// bytes per parameter, and the blocks share the rest evenly.
func TestLayerSizes(t *testing.T) {
	m := mustLookup(t, "llama3.1:70b")
	// One 24 GB GPU holds some blocks; the output layer stays on the host.
	e := Estimate(m, EstimateOptions{Context: 8192, GPUs: []uint64{24 * gib}})
	checkShares(t, e)
	output := uint64(float64(m.Vocab) * float64(m.Embedding) * float64(m.FileSize) / float64(m.Parameters))
	perBlock := (e.Weights - output) / uint64(m.Layers)
	g := e.GPUs[0]
	if g.Layers == 0 || g.Layers >= m.Layers {
		t.Fatalf("%d layers on the GPU, want some but not all blocks", g.Layers)
	}
	if want := uint64(g.Layers) * perBlock; diff(g.Weights, want) > uint64(g.Layers) {
		t.Fatalf("GPU weights %d for %d blocks, want %d (%d each)", g.Weights, g.Layers, want, perBlock)
	}
	if e.HostWeights != output {
		t.Fatalf("input embedding %d, want %d", e.HostWeights, output)
	}
	hostBlocks := uint64(m.Layers - g.Layers)
	if want := hostBlocks*(perBlock+e.KV/uint64(m.Layers)) + (e.Weights - perBlock*uint64(m.Layers)); diff(e.Host, want) > 64 {
		t.Fatalf("host holds %d, want %d blocks and the output layer: %d", e.Host, hostBlocks, want)
	}
}

func diff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
