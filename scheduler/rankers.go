package scheduler

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
)

// rankers returns the rankers and their weights. Spread outweighs the
// others together, so an emptier zone always wins; bin-pack and on-disk
// trade off against each other.
func rankers() []ranker {
	return []ranker{
		{RankBinPack, 1, binPack},
		{RankSpread, 3, spread},
		{RankOnDisk, 1, onDisk},
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

// score runs the rankers over c.
func (r *run) score(c *check) float64 {
	var s float64
	for _, rk := range r.rankers {
		if rk.name == RankSpread && c.j.d.SpreadBy == "" {
			continue
		}
		s += rk.weight * rk.fn(c)
	}
	return s
}
