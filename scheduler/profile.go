package scheduler

import (
	"slices"
	"sync"

	"github.com/sovra/sovra/models"
)

// profile is what the scheduler needs to know of a model's memory as the
// options load it, worked out once from models.Estimate.
type profile struct {
	model models.Model
	load  models.EstimateOptions
	// need1 is what the model reserves on a GPU that holds it whole;
	// fit1 the free memory such a GPU needs (need1 plus the block that
	// Ollama's layout keeps free as headroom).
	need1, fit1 uint64
	// layers is the weights and cache of the layers placed on GPUs;
	// perGPU the graph and runtime charged to every GPU that holds some;
	// head the headroom Ollama's layout takes off every GPU.
	layers, perGPU, head uint64
	// weights is the size of the model file, what a pull costs.
	weights uint64
}

// hugeGPU is a GPU that holds any model.
const hugeGPU = 1 << 50

func newProfile(m models.Model, load models.EstimateOptions) *profile {
	load.GPUs = nil
	one := func(free uint64) models.MemoryEstimate {
		o := load
		o.GPUs = []uint64{free}
		return models.Estimate(m, o)
	}
	e := one(hugeGPU)
	s := e.GPUs[0]
	p := &profile{model: m, load: load, need1: s.Total, layers: s.Weights + s.KV,
		perGPU: s.Graph + s.Runtime, weights: m.WeightBytes()}
	// The smallest free memory that holds the model on one GPU: fitting
	// grows with free memory, and need1 plus the layers always fits.
	lo, hi := p.need1, p.need1+p.layers
	for !one(hi).Fits {
		if hi >= hugeGPU {
			p.fit1, p.head = ^uint64(0), ^uint64(0)-p.need1 // fits nowhere
			return p
		}
		hi *= 2
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if one(mid).Fits {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	p.fit1, p.head = lo, lo-p.need1
	return p
}

// verdict is what a quick look at a node's free memory says.
type verdict int

const (
	noFit      verdict = iota // cannot fit, for certain
	oneGPU                    // fits whole on one GPU, exactly as said
	maybeSplit                // may fit split over several GPUs
)

// quick judges free (the free memory of the GPUs the model may use, in
// node order) without running the estimator. For oneGPU it returns the
// position of the GPU Ollama would choose (the most free memory, the
// first of equals) and need1; for maybeSplit a close guess of the total
// it would reserve.
func (p *profile) quick(free []uint64) (int, uint64, verdict) {
	best := -1
	for i, f := range free {
		if best < 0 || f > free[best] {
			best = i
		}
	}
	if best < 0 {
		return -1, 0, noFit
	}
	if free[best] >= p.fit1 {
		return best, p.need1, oneGPU
	}
	var sum uint64
	for _, f := range free {
		sum += p.avail(f)
	}
	if sum < p.layers {
		return -1, 0, noFit
	}
	return -1, p.splitGuess(free), maybeSplit
}

// avail is what a GPU with free memory f has for layers once it holds
// some: Ollama's layout takes the headroom, the graph and the runtime off.
func (p *profile) avail(f uint64) uint64 {
	if f <= p.head || f-p.head <= p.perGPU {
		return 0
	}
	return f - p.head - p.perGPU
}

// splitGuess is the total reserved over the fewest GPUs, largest first,
// that hold the layers.
func (p *profile) splitGuess(free []uint64) uint64 {
	sorted := slices.Clone(free)
	slices.SortFunc(sorted, func(a, b uint64) int { return cmpDesc(a, b) })
	var got uint64
	k := 0
	for _, f := range sorted {
		if got >= p.layers {
			break
		}
		got += p.avail(f)
		k++
	}
	return p.layers + uint64(k)*p.perGPU
}

// exact lays the model out as Ollama would over free and returns what it
// reserves on each of those GPUs, or nil when it does not fit.
func (p *profile) exact(free []uint64) []uint64 {
	pos, need, v := p.quick(free)
	switch v {
	case noFit:
		return nil
	case oneGPU:
		shares := make([]uint64, len(free))
		shares[pos] = need
		return shares
	}
	return p.split(free)
}

// split runs the estimator over free, through a cache: nodes of one kind
// offer the same free memory again and again.
func (p *profile) split(free []uint64) []uint64 {
	key, cacheable := keyOfFree(p, free)
	if cacheable {
		if shares, ok := caches.split(key); ok {
			return shares
		}
	}
	o := p.load
	o.GPUs = free
	e := models.Estimate(p.model, o)
	var shares []uint64
	if e.Fits {
		shares = make([]uint64, len(free))
		for i, s := range e.GPUs {
			shares[i] = s.Total
		}
	}
	if cacheable {
		caches.putSplit(key, shares)
	}
	return shares
}

// shortfall says how much memory the model lacks on free at best, and how
// many GPUs that best layout used.
func (p *profile) shortfall(free []uint64) (short uint64, used int) {
	o := p.load
	o.GPUs = free
	e := models.Estimate(p.model, o)
	for _, s := range e.GPUs {
		if s.Layers > 0 {
			used++
		}
	}
	if used == 0 {
		most := uint64(0)
		for _, f := range free {
			most = max(most, f)
		}
		return p.fit1 - min(p.fit1, most), 0
	}
	short = e.Host
	if e.OllamaEngine {
		short -= min(short, e.HostWeights)
	}
	return short, used
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// maxKeyGPUs is the most GPUs a split is cached for.
const maxKeyGPUs = 16

// keyOfFree makes the cache key of a split; ok is false for a node with
// more GPUs than a key holds.
func keyOfFree(p *profile, free []uint64) (k splitKey, ok bool) {
	if len(free) > maxKeyGPUs {
		return k, false
	}
	k.p, k.n = p, len(free)
	copy(k.free[:], free)
	return k, true
}

// profileKey identifies a profile: the model figures the estimator reads
// and the load options.
type profileKey struct {
	name, arch, quant                           string
	params, file                                uint64
	layers, embed, heads, kvHeads, headK, headV int
	latent, vocab, context                      int
	tied                                        bool
	ctx, maxCtx, parallel, batch                int
	kvCache                                     models.KVCacheType
	overhead                                    uint64
}

func keyOf(m models.Model, o models.EstimateOptions) profileKey {
	return profileKey{
		name: m.Name, arch: m.Architecture, quant: m.Quantization, params: m.Parameters, file: m.FileSize,
		layers: m.Layers, embed: m.Embedding, heads: m.Heads, kvHeads: m.KVHeads, headK: m.HeadDimK, headV: m.HeadDimV,
		latent: m.KVLatentDim, vocab: m.Vocab, context: m.ContextLength, tied: m.TiedEmbeddings,
		ctx: o.Context, maxCtx: o.MaxContext, parallel: o.Parallel, batch: o.Batch, kvCache: o.KVCache, overhead: o.GPUOverhead,
	}
}

type splitKey struct {
	p    *profile
	n    int
	free [maxKeyGPUs]uint64
}

// maxCached bounds each cache; a full cache starts over.
const maxCached = 1 << 16

// caches remember profiles and split layouts across runs. They hold pure
// functions of their keys, so they change no result, only its cost.
var caches = &cache{profiles: map[profileKey]*profile{}, splits: map[splitKey][]uint64{}}

type cache struct {
	mu       sync.Mutex
	profiles map[profileKey]*profile
	splits   map[splitKey][]uint64
}

// profile returns the profile of m loaded as o.
func (c *cache) profile(m models.Model, o models.EstimateOptions) *profile {
	k := keyOf(m, o)
	c.mu.Lock()
	p, ok := c.profiles[k]
	c.mu.Unlock()
	if ok {
		return p
	}
	p = newProfile(m, o)
	c.mu.Lock()
	defer c.mu.Unlock()
	if q, ok := c.profiles[k]; ok {
		return q
	}
	if len(c.profiles) >= maxCached {
		c.profiles, c.splits = map[profileKey]*profile{}, map[splitKey][]uint64{}
	}
	c.profiles[k] = p
	return p
}

func (c *cache) split(k splitKey) ([]uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.splits[k]
	return s, ok
}

func (c *cache) putSplit(k splitKey, shares []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.splits) >= maxCached {
		c.splits = map[splitKey][]uint64{}
	}
	c.splits[k] = shares
}
