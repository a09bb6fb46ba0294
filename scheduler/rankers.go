package scheduler

import (
	"math"
	"strconv"
)

// ranker scores a node that passed the filters for a replica, from 0
// (worst) to 1 (best); a node's score is the weighted sum.
type ranker struct {
	name   string
	weight float64
	fn     func(*check) float64
}

// Ranker names, as Explain reports them.
const (
	RankBinPack = "bin-pack"
	RankSpread  = "spread"
	RankOnDisk  = "on-disk"
	// RankLowCarbon prefers nodes labelled as running on low-carbon power.
	RankLowCarbon = "low-carbon"
)

// The node labels RankLowCarbon reads. Node labels are set by operators
// only (a node's own --label is not trusted).
const (
	// EnergyLabel with the value LowCarbon marks a node powered by
	// low-carbon electricity (energy=low-carbon).
	EnergyLabel = "energy"
	LowCarbon   = "low-carbon"
	// CarbonIntensityLabel gives the grams of CO2 per kWh of the node's
	// electricity (carbon-intensity=25); lower is better. It wins over
	// EnergyLabel on a node that has both.
	CarbonIntensityLabel = "carbon-intensity"
)

// lowCarbonWeight is small: the ranker decides between nodes whose other
// scores are equal or within a hundredth (bin-pack within 1% of the
// largest node's memory), and never outweighs a filter, the spread of a
// deployment over its zones, or a real difference in packing.
const lowCarbonWeight = 0.01

// carbonScale is the carbon intensity, in g CO2/kWh, that scores one
// half: 0 scores 1, hydro or nuclear (about 25) 0.8, a mixed grid (about
// 300) 0.25, coal (about 900) 0.1.
const carbonScale = 100

// rankers returns the rankers and their weights. Spread outweighs the
// others together, so an emptier zone always wins; bin-pack and on-disk
// trade off against each other; low-carbon breaks their ties.
func rankers() []ranker {
	return []ranker{
		{RankBinPack, 1, binPack},
		{RankSpread, 3, spread},
		{RankOnDisk, 1, onDisk},
		{RankLowCarbon, lowCarbonWeight, lowCarbonPower},
	}
}

// binPack prefers the node with the least memory free after placing,
// counted in bytes over the largest node of the cluster: small models
// fill up small or busy nodes and large nodes stay whole for large
// models.
func binPack(c *check) float64 {
	if c.r.maxCap == 0 {
		return 0
	}
	after := c.n.freeTotal - min(c.n.freeTotal, c.need)
	return 1 - float64(after)/float64(c.r.maxCap)
}

// spread prefers, for a deployment with SpreadBy, nodes whose value of
// that label holds fewer of its replicas.
func spread(c *check) float64 {
	key := c.j.d.SpreadBy
	if key == "" {
		return 0
	}
	return 1 / float64(1+c.j.spread[c.n.label(key)])
}

// pullScale is the model size at which holding it on disk is worth half
// the on-disk weight: a pull of a few GiB is cheap, one of hundreds is not.
const pullScale = 20 << 30

// onDisk prefers a node that has the model on disk, the more so the
// larger the model.
func onDisk(c *check) float64 {
	if c.j.prof == nil || !c.n.hasModel(c.j.canon, &c.r.opts) {
		return 0
	}
	w := float64(c.j.prof.weights)
	return w / (w + pullScale)
}

// lowCarbonPower prefers nodes labelled as running on low-carbon power:
// carbon-intensity=G scores carbonScale/(carbonScale+G); energy=low-carbon
// scores 1; a node with neither, or with a carbon-intensity that is not a
// number of grams, scores 0.
func lowCarbonPower(c *check) float64 {
	return c.r.carbon()[c.n.pos]
}

// carbon is every node's low-carbon score by position, worked out once
// per run.
func (r *run) carbon() []float64 {
	if r.carbonScores == nil {
		r.carbonScores = make([]float64, len(r.nodes))
		for i, n := range r.nodes {
			r.carbonScores[i] = carbonScore(n.n.Labels)
			r.carbonLabels = r.carbonLabels || n.label(EnergyLabel) != "" || n.label(CarbonIntensityLabel) != ""
		}
	}
	return r.carbonScores
}

// carbonScore scores a node's labels for lowCarbonPower.
func carbonScore(labels map[string]string) float64 {
	if v, ok := labels[CarbonIntensityLabel]; ok {
		g, err := strconv.ParseFloat(v, 64)
		if err != nil || g < 0 || math.IsInf(g, 0) || math.IsNaN(g) {
			return 0
		}
		return carbonScale / (carbonScale + g)
	}
	if labels[EnergyLabel] == LowCarbon {
		return 1
	}
	return 0
}

// skip says whether a ranker has nothing to say here: spread for a
// deployment without SpreadBy, low-carbon in a cluster where no node
// carries an energy or carbon-intensity label. Skipped rankers are left
// out of the score and of Explain.
func (r *run) skip(rk ranker, c *check) bool {
	switch rk.name {
	case RankSpread:
		return c.j.d.SpreadBy == ""
	case RankLowCarbon:
		r.carbon()
		return !r.carbonLabels
	}
	return false
}

// score runs the rankers over c.
func (r *run) score(c *check) float64 {
	var s float64
	for _, rk := range r.rankers {
		if r.skip(rk, c) {
			continue
		}
		s += rk.weight * rk.fn(c)
	}
	return s
}
