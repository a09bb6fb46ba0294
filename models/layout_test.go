package models

import (
	"slices"
	"testing"
)

const mib = 1 << 20

// TestLayoutMatchesOllama runs the layout on the cases of Ollama v0.17.4's
// own test of its layout (llm/server_test.go, TestLLMServerFitGPU: the
// cases without num_gpu, integrated GPUs or mixed libraries, which sovra
// does not model) and expects Ollama's answers. Those cases call
// createLayout directly, after the headroom that llamaServer.Load takes
// off every GPU (block 0's weights and cache); layout takes that headroom
// itself, so each GPU is given it on top.
func TestLayoutMatchesOllama(t *testing.T) {
	const minMemory = 457 * mib // what Ollama's cases add to each GPU
	cases := []struct {
		name   string
		free   []uint64 // per GPU, as in Ollama's case
		layers []uint64
		want   []int // GPU index per layer, -1 on the host
	}{
		{"No GPU", nil, []uint64{50 * mib, 50 * mib, 50 * mib}, []int{-1, -1, -1}},
		{"Full single GPU", []uint64{256*mib + minMemory}, []uint64{50 * mib, 50 * mib, 50 * mib}, []int{0, 0, 0}},
		{"Partial single GPU", []uint64{256*mib + minMemory}, []uint64{100 * mib, 100 * mib, 100 * mib, 100 * mib}, []int{-1, 0, 0, -1}},
		{"Multi GPU fits on one", []uint64{128*mib + minMemory, 256*mib + minMemory}, []uint64{50 * mib, 50 * mib, 50 * mib}, []int{1, 1, 1}},
		{"Multi GPU split", []uint64{128*mib + minMemory, 256*mib + minMemory}, []uint64{256 * mib, 50 * mib, 50 * mib}, []int{1, 0, 0}},
		{"Multi GPU partial", []uint64{128*mib + minMemory, 256*mib + minMemory}, []uint64{256 * mib, 256 * mib, 50 * mib}, []int{-1, 1, -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			free := make([]uint64, len(c.free))
			for i, f := range c.free {
				free[i] = f + c.layers[0]
			}
			if got := layout(c.layers, free, GPUReserve, 0); !slices.Equal(got, c.want) {
				t.Fatalf("layers on GPUs %v, Ollama's %v", got, c.want)
			}
		})
	}
}

// TestHeadroomPerGPU checks that block 0's size is held back on every
// GPU, as Ollama's llamaServer.Load takes it off each GPU's free memory
// before it lays the layers out: a model fits on a GPU with exactly its
// layers, graph, reserve and that headroom free, and not with a byte
// less; over two GPUs each needs the headroom.
func TestHeadroomPerGPU(t *testing.T) {
	sizes := []uint64{100, 100, 100, 50} // three blocks and the output layer
	const reserve, graph, headroom = 10, 20, 100
	all := func(g int) []int { return []int{g, g, g, g} }
	cases := []struct {
		name string
		free []uint64
		want []int
	}{
		{"one GPU at the edge", []uint64{350 + reserve + graph + headroom}, all(0)},
		{"one GPU a byte short", []uint64{350 + reserve + graph + headroom - 1}, []int{0, 0, 0, -1}},
		// The best split is two blocks on one GPU and a block and the
		// output layer on the other: 200 bytes of layers on each.
		{"two GPUs at the edge", []uint64{200 + reserve + graph + headroom, 200 + reserve + graph + headroom}, []int{0, 0, 1, 1}},
		{"two GPUs a byte short", []uint64{200 + reserve + graph + headroom - 1, 200 + reserve + graph + headroom - 1}, []int{-1, 0, 1, -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := layout(sizes, c.free, reserve, graph); !slices.Equal(got, c.want) {
				t.Fatalf("layers on GPUs %v, want %v", got, c.want)
			}
		})
	}
}

// TestEstimateHoldsBackBlockZero checks the headroom through Estimate on
// catalog models: the smallest GPU a model fits on whole has its GPU
// share plus block 0's weights and cache free.
func TestEstimateHoldsBackBlockZero(t *testing.T) {
	for _, name := range []string{"llama3.1:8b", "qwen2.5:7b", "gemma2:9b"} {
		t.Run(name, func(t *testing.T) {
			m := mustLookup(t, name)
			opts := EstimateOptions{Context: 8192, GPUs: []uint64{1 << 40}}
			big := Estimate(m, opts)
			output := min(mulDiv(uint64(m.Vocab)*uint64(m.Embedding), m.WeightBytes(), m.Parameters), big.Weights)
			block0 := (big.Weights-output)/uint64(m.Layers) + big.KV/uint64(m.Layers)
			edge := big.GPUs[0].Total + block0
			for _, c := range []struct {
				free uint64
				fits bool
			}{{edge, true}, {edge - 1, false}} {
				opts.GPUs = []uint64{c.free}
				if e := Estimate(m, opts); e.Fits != c.fits {
					t.Errorf("%s on a GPU with %d free (share %d + block 0 %d %+d): fits %v, want %v",
						name, c.free, big.GPUs[0].Total, block0, int64(c.free)-int64(edge), e.Fits, c.fits)
				}
			}
		})
	}
}
