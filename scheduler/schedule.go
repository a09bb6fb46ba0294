package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/sovra/sovra/cluster/state"
)

// maxPasses bounds the placement passes of a run. A pass only repeats
// when the one before placed or evicted something, which it can do only
// finitely often; real clusters settle in two or three.
const maxPasses = 12

// Schedule computes the plan for a snapshot of the state. It reads the
// snapshot and changes nothing; the same snapshot and options give the
// same plan.
//
// A run goes: admit the state's placements (drop those whose node is
// lost or whose constraints fail, lay every node out, scale down, keep
// replicas on leaving nodes until replacements are ready); then, highest
// priority first, models that need several GPUs next, then the most
// constrained, then the largest, place the missing replicas on the best
// node that passes the filters, evicting
// lower-priority replicas when none does; repeat while a pass changes
// something; then write the plan. DESIGN.md has the rules.
func Schedule(snapshot *state.State, opts Options) Plan {
	r := newRun(snapshot, opts)
	r.admit()
	r.place()
	return r.plan()
}

// run is the working state of one Schedule or Explain call.
type run struct {
	opts    Options
	snap    *state.State
	static  []filter
	dynamic []filter
	rankers []ranker
	nodes   []*nodeView
	byID    map[string]*nodeView
	jobs    []*job // by name
	byName  map[string]*job
	maxCap  uint64 // the largest node's capacity
	maxGPU  uint64 // the largest GPU's capacity

	removals  []Removal
	evictions []Eviction
	// lowest is the lowest priority of any replica (none: haveSlots
	// false): a deployment at or below it has no one to evict.
	lowest    int
	haveSlots bool

	// epoch stamps the nodes that hold a replica of the job being placed.
	epoch  int
	stamps []int
	// Scratch space, reused by every placement.
	vec    []uint64
	optBuf []option
	layBuf [][]share
	chk    check
	mem    arena

	explain  string
	captured []NodeExplanation

	// carbonScores are the nodes' low-carbon scores by position (nil
	// until the ranker first runs); carbonLabels says some node has an
	// energy or carbon-intensity label (rankers.go).
	carbonScores []float64
	carbonLabels bool
}

func newRun(snap *state.State, opts Options) *run {
	opts.registered = snap.Models
	r := &run{
		opts: opts, snap: snap,
		static: staticFilters(), dynamic: dynamicFilters(), rankers: rankers(),
		byID: make(map[string]*nodeView, len(snap.Nodes)), byName: make(map[string]*job, len(snap.Deployments)),
	}
	for i, n := range snap.NodeList() {
		v := newView(n, i, &r.opts)
		r.nodes = append(r.nodes, v)
		r.byID[n.ID] = v
		r.maxCap = max(r.maxCap, v.capTotal)
		for _, c := range v.cap {
			r.maxGPU = max(r.maxGPU, c)
		}
	}
	r.stamps = make([]int, len(r.nodes))
	r.mem.slots = make([]slot, 0, len(snap.Placements)+64)
	res := resolver{r: r, models: map[string]resolved{}, eligs: map[string]*eligibility{}}
	deps := make([]*state.Deployment, 0, len(snap.Deployments))
	for _, d := range snap.Deployments {
		deps = append(deps, d)
	}
	slices.SortFunc(deps, func(a, b *state.Deployment) int { return cmp.Compare(a.Name, b.Name) })
	jobs := make([]job, len(deps))
	for i, d := range deps {
		j := &jobs[i]
		j.ord = i
		if d.Idle {
			// An idle deployment wants no replicas until it is woken.
			idle := *d
			idle.Replicas = 0
			d = &idle
		}
		res.fill(j, d)
		j.slots = r.mem.slotList(d.Replicas + 1)
		r.jobs = append(r.jobs, j)
		r.byName[d.Name] = j
	}
	return r
}

// orderKey is what placementOrder compares, copied out of the jobs.
type orderKey struct {
	prio, choices, ord int
	split              bool // too large for any one GPU of the cluster
	need               uint64
	j                  *job
}

// pending returns the deployments short of replicas (on the first pass
// also the one to explain) in placement order: highest priority first;
// then models no single GPU of the cluster holds, which need whole nodes;
// then the deployment with the fewest nodes its constraints allow, so
// that one that may go anywhere does not take the nodes one that may not
// needs; then the largest model; then by name. The others have nothing
// to do: leaving them out spares a run over a settled cluster a sort.
func (r *run) pending(first bool) []*job {
	var keys []orderKey
	for _, j := range r.jobs {
		if j.valid() && (j.active < j.d.Replicas || first && j.d.Name == r.explain) {
			split := j.prof.fit1 > r.maxGPU
			keys = append(keys, orderKey{prio: j.d.Priority, choices: len(r.candidates(j)), ord: j.ord, split: split, need: j.need(), j: j})
		}
	}
	slices.SortFunc(keys, placementOrder)
	out := make([]*job, len(keys))
	for i, k := range keys {
		out[i] = k.j
	}
	return out
}

func placementOrder(a, b orderKey) int {
	if c := cmp.Compare(b.prio, a.prio); c != 0 {
		return c
	}
	if a.split != b.split {
		if a.split {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.choices, b.choices); c != 0 {
		return c
	}
	if c := cmp.Compare(b.need, a.need); c != 0 {
		return c
	}
	return cmp.Compare(a.ord, b.ord) // the order of names
}

// resolver turns deployments into jobs, resolving each model and parsing
// each constraint list once per run.
type resolver struct {
	r      *run
	models map[string]resolved
	eligs  map[string]*eligibility
}

type resolved struct {
	prof  *profile
	canon string
}

func (res *resolver) fill(j *job, d *state.Deployment) {
	j.d = d
	key := strings.Join(d.Constraints, "\x00")
	e, ok := res.eligs[key]
	if !ok {
		cons, err := ParseConstraints(d.Constraints)
		e = &eligibility{cons: cons, text: cons.String(), gpus: map[*nodeView][]int{}, err: err}
		res.eligs[key] = e
	}
	j.elig = e
	m, ok := res.models[d.Model]
	if !ok {
		if model, found := res.r.opts.lookup(d.Model); found {
			m = resolved{prof: caches.profile(model, res.r.opts.Load), canon: strings.ToLower(model.Name)}
		}
		res.models[d.Model] = m
	}
	j.prof, j.canon = m.prof, m.canon
	switch {
	case e.err != nil:
		j.err = e.err.Error()
	case m.prof == nil:
		j.err = FiguresUnknown(d.Model)
	}
}

// candidates returns the healthy nodes that pass the static filters for
// j, computed once per constraint list.
func (r *run) candidates(j *job) []candidate {
	e := j.elig
	if e.built {
		return e.nodes
	}
	e.built = true
	for _, n := range r.nodes {
		r.chk = check{r: r, j: j, n: n, quiet: true}
		if r.rejects(r.static, &r.chk) == "" {
			e.nodes = append(e.nodes, candidate{n: n, gpus: j.gpusFor(n)})
		}
	}
	return e.nodes
}

// rejects runs filters over c and returns the name of the first that
// rejects, or "".
func (r *run) rejects(fs []filter, c *check) string {
	for _, f := range fs {
		if f.fn(c) != "" {
			return f.name
		}
	}
	return ""
}

// remove records that a replica the state holds leaves.
func (r *run) remove(s *slot, cause Cause, reason string) {
	if s.placed == nil {
		return
	}
	r.removals = append(r.removals, Removal{Deployment: s.job.d.Name, Node: s.node.n.ID, Cause: cause, Reason: reason})
}

func (r *run) noteSlot(j *job) {
	if !r.haveSlots || j.d.Priority < r.lowest {
		r.lowest, r.haveSlots = j.d.Priority, true
	}
}

// admit takes in the state's placements.
func (r *run) admit() {
	// Each placement is judged on its own, so the order of the map does
	// not matter: a node's slots are sorted below, a job's when read.
	for _, p := range r.snap.Placements {
		r.admitOne(p)
	}
	for _, n := range r.nodes {
		slices.SortFunc(n.slots, byLayout)
		r.settle(n)
	}
	for _, j := range r.jobs {
		if j.valid() {
			r.trim(j)
		}
	}
}

func (r *run) admitOne(p *state.Placement) {
	j, n := r.byName[p.Deployment], r.byID[p.Node]
	if j == nil {
		return
	}
	s := r.mem.slot()
	*s = slot{need: j.need(), ord: j.ord, job: j, node: n, placed: p}
	switch {
	case !j.valid():
		// Nothing changes for a deployment the run cannot schedule.
	case n == nil:
		r.removals = append(r.removals, Removal{Deployment: p.Deployment, Node: p.Node, Cause: CauseNodeLost, Reason: "node is not a member"})
		return
	case n.health == lost:
		r.remove(s, CauseNodeLost, n.why)
		return
	default:
		if why := r.keptFeasible(j, n); why != "" {
			r.remove(s, CauseInfeasible, why)
			return
		}
		s.drain = n.health == leaving
	}
	if n == nil {
		return
	}
	if n.slots == nil {
		n.slots = r.mem.slotList(16)
	}
	n.slots = append(n.slots, s)
	j.add(s)
	r.noteSlot(j)
}

// keptFeasible says why a constraint fails for a replica the state holds.
func (r *run) keptFeasible(j *job, n *nodeView) string {
	c := check{r: r, j: j, n: n}
	if why := labelsMatch(&c); why != "" {
		return why
	}
	return gpuModelMatch(&c)
}

// trim removes replicas beyond the wanted count, the cheapest to lose
// first, and replicas on leaving nodes once enough elsewhere are ready.
func (r *run) trim(j *job) {
	var active, draining []*slot
	for _, s := range j.sortedSlots() {
		if s.drain {
			draining = append(draining, s)
		} else {
			active = append(active, s)
		}
	}
	if extra := len(active) - j.d.Replicas; extra > 0 {
		slices.SortStableFunc(active, removalOrder)
		for _, s := range active[:extra] {
			r.detach(s)
			if j.d.Idle {
				r.remove(s, CauseIdle, "the deployment is idle")
				continue
			}
			r.remove(s, CauseScaleDown, fmt.Sprintf("scaled down to %d replicas; this one was %s", j.d.Replicas, removalWhy(s)))
		}
		active = active[extra:]
	}
	ready := 0
	for _, s := range active {
		if s.ready() {
			ready++
		}
	}
	keep := max(0, j.d.Replicas-ready)
	for _, s := range draining {
		if s.ready() && keep > 0 {
			keep--
			s.reason = s.node.why + ": kept until a replacement is ready"
			continue
		}
		r.detach(s)
		if s.ready() {
			r.remove(s, CauseDrained, s.node.why+" and enough replicas elsewhere are ready")
		} else {
			r.remove(s, CauseDrained, s.node.why+" and the replica was not serving")
		}
	}
}

// removalOrder sorts replicas the cheapest to lose first: on a down
// node, failed, not ready yet, then ready; among equals the one on the
// most loaded node, then the last node by id.
func removalOrder(a, b *slot) int {
	if c := cmp.Compare(removalClass(a), removalClass(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(b.node.load(), a.node.load()); c != 0 {
		return c
	}
	return cmp.Compare(b.node.pos, a.node.pos)
}

func removalClass(s *slot) int {
	switch {
	case s.node.health == downGrace:
		return 0
	case s.placed.State == state.PlacementFailed:
		return 1
	case s.placed.State != state.PlacementReady:
		return 2
	}
	return 3
}

func removalWhy(s *slot) string {
	switch removalClass(s) {
	case 0:
		return "on a down node"
	case 1:
		return "failed"
	case 2:
		return fmt.Sprintf("not ready yet (%s)", s.placed.State)
	}
	return fmt.Sprintf("on the most loaded node (%.0f%% of its VRAM reserved)", 100*s.node.load())
}

// load is the share of the node's capacity reserved.
func (n *nodeView) load() float64 {
	if n.capTotal == 0 {
		return 0
	}
	return 1 - float64(n.freeTotal)/float64(n.capTotal)
}

// place runs the placement passes. A deployment that an eviction leaves
// short waits for the next pass.
func (r *run) place() {
	for pass := range maxPasses {
		changed := false
		for _, j := range r.pending(pass == 0) {
			if pass == 0 && j.d.Name == r.explain {
				r.captured = r.explainNodes(j)
			}
			for j.active < j.d.Replicas {
				if !r.placeOne(j) {
					break
				}
				changed = true
			}
		}
		if !changed {
			return
		}
	}
}

// placeOne places one replica of j, evicting lower-priority replicas if
// it must.
func (r *run) placeOne(j *job) bool {
	if r.placeBest(j) {
		return true
	}
	return !r.opts.NoPreemption && r.preempt(j)
}

// option is a node that may take a replica, with its score.
type option struct {
	n     *nodeView
	score float64
}

// placeBest places a replica of j on the best-scored node whose layout
// takes it.
func (r *run) placeBest(j *job) bool {
	opts := r.options(j)
	for len(opts) > 0 {
		bi := 0
		for i, o := range opts {
			if o.score > opts[bi].score {
				bi = i
			}
		}
		s := newSlot(j, opts[bi].n)
		if r.tryAdd(s) {
			s.reason = fmt.Sprintf("best of %d nodes that fit (score %.3f)", len(opts), opts[bi].score)
			j.add(s)
			r.noteSlot(j)
			return true
		}
		opts = slices.Delete(opts, bi, bi+1)
	}
	return false
}

// options scores the nodes that may take a replica of j: the fast path
// of the filters (static ones precomputed, then one per node, then a
// quick look at the free memory) and the rankers.
func (r *run) options(j *job) []option {
	r.stamp(j)
	opts := r.optBuf[:0]
	for _, cd := range r.candidates(j) {
		n := cd.n
		if r.stamps[n.pos] == r.epoch {
			continue
		}
		free := n.free
		if cd.gpus != nil {
			free = r.gather(n.free, cd.gpus)
		}
		_, need, v := j.prof.quick(free)
		if v == noFit {
			continue
		}
		r.chk = check{r: r, j: j, n: n, need: need}
		opts = append(opts, option{n: n, score: r.score(&r.chk)})
	}
	r.optBuf = opts
	return opts
}

// stamp marks the nodes that hold a replica of j with a new epoch.
func (r *run) stamp(j *job) {
	r.epoch++
	for _, s := range j.slots {
		r.stamps[s.node.pos] = r.epoch
	}
}

// gather copies free at positions into a scratch vector.
func (r *run) gather(free []uint64, pos []int) []uint64 {
	r.vec = r.vec[:0]
	for _, p := range pos {
		r.vec = append(r.vec, free[p])
	}
	return r.vec
}
