package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
)

// health is what a node's status means for its replicas.
type health int

const (
	healthy   health = iota // ready: keeps replicas and takes new ones
	cordoned                // keeps its replicas, takes no new ones
	leaving                 // draining: replicas move, make-before-break
	downGrace               // down within the grace: replicas stay, nothing new
	lost                    // down past the grace: replicas go elsewhere
)

// nodeView is a node as one run sees it: its GPUs' capacity after the
// headroom, the replicas on it and what they leave free.
type nodeView struct {
	n      *state.Node
	pos    int // in run.nodes, which are sorted by id
	health health
	why    string // why it takes no new replica; "" when healthy
	cap    []uint64
	free   []uint64
	// capTotal and freeTotal sum cap and free.
	capTotal, freeTotal uint64
	// slots are the replicas on the node in layout order (see byLayout).
	slots []*slot
	disk  map[string]bool // canonical names of the models on disk
}

// share is memory a replica reserves on one GPU, by position in the
// node's GPU list.
type share struct {
	pos   int
	bytes uint64
}

// slot is one replica in a run: kept from the state or placed by the run.
type slot struct {
	// need and ord copy the job's, the keys of the layout order.
	need   uint64
	ord    int
	job    *job
	node   *nodeView
	placed *state.Placement // nil for a replica this run places
	shares []share
	drain  bool // on a leaving node, kept until a replacement is ready
	reason string
}

// newSlot returns a replica of j on n that the run places.
func newSlot(j *job, n *nodeView) *slot {
	return &slot{need: j.need(), ord: j.ord, job: j, node: n}
}

func (s *slot) reserved() uint64 {
	var b uint64
	for _, sh := range s.shares {
		b += sh.bytes
	}
	return b
}

// ready reports whether the replica serves: ready in the state on a node
// that is up.
func (s *slot) ready() bool {
	return s.placed != nil && s.placed.State == state.PlacementReady && s.node.health != downGrace
}

// job is a deployment as one run sees it.
type job struct {
	d     *state.Deployment
	ord   int // position by name among the run's deployments
	prof  *profile
	elig  *eligibility
	err   string  // why the deployment cannot be scheduled at all
	canon string  // model name as the on-disk lists are matched
	slots []*slot // one per node
	// active counts the slots that count as replicas: not draining.
	active int
	spread map[string]int // active replicas per value of the SpreadBy label; nil without SpreadBy
}

func (j *job) valid() bool { return j.err == "" }

func (j *job) need() uint64 {
	if j.prof == nil {
		return 0
	}
	return j.prof.need1
}

func (j *job) add(s *slot) {
	j.slots = append(j.slots, s)
	if s.drain {
		return
	}
	j.active++
	if j.d.SpreadBy != "" {
		if j.spread == nil {
			j.spread = map[string]int{}
		}
		j.spread[s.node.label(j.d.SpreadBy)]++
	}
}

func (j *job) drop(s *slot) {
	if i := slices.Index(j.slots, s); i >= 0 {
		j.slots = slices.Delete(j.slots, i, i+1)
	}
	if s.drain {
		return
	}
	j.active--
	if j.d.SpreadBy != "" {
		j.spread[s.node.label(j.d.SpreadBy)]--
	}
}

// slotOn returns the job's replica on n, or nil.
func (j *job) slotOn(n *nodeView) *slot {
	for _, s := range j.slots {
		if s.node == n {
			return s
		}
	}
	return nil
}

// sortedSlots returns the job's slots by node id.
func (j *job) sortedSlots() []*slot {
	slices.SortFunc(j.slots, func(a, b *slot) int { return a.node.pos - b.node.pos })
	return j.slots
}

func (n *nodeView) label(key string) string {
	if key == "" {
		return ""
	}
	return n.n.Labels[key]
}

// eligibility is, for one list of constraints, the healthy nodes that
// satisfy them and the GPUs of each that a replica may use.
type eligibility struct {
	cons  Constraints
	err   error // the constraints do not parse
	text  string
	built bool // nodes is computed
	nodes []candidate
	gpus  map[*nodeView][]int // positions a GPU constraint allows; absent: all
}

type candidate struct {
	n    *nodeView
	gpus []int // nil: all
}

// newView builds a node's view; its slots come later.
func newView(n *state.Node, pos int, opts *Options) *nodeView {
	v := &nodeView{n: n, pos: pos, cap: make([]uint64, 0, len(n.GPUs))}
	v.health, v.why = nodeHealth(n, opts)
	for _, g := range n.GPUs {
		c := g.MemoryBytes - min(g.MemoryBytes, opts.Headroom)
		v.cap = append(v.cap, c)
		v.capTotal += c
	}
	v.free = slices.Clone(v.cap)
	v.freeTotal = v.capTotal
	return v
}

// nodeHealth classifies a node by its status and, for a down node, how
// long it has been down. Cordon and drain differ as in kubectl and Nomad:
// a cordoned node keeps what runs on it, a draining one gives it up.
func nodeHealth(n *state.Node, opts *Options) (health, string) {
	switch n.Status {
	case state.NodeReady:
		return healthy, ""
	case state.NodeCordoned:
		return cordoned, "node is cordoned"
	case state.NodeDown:
		down := time.Duration(opts.Now.UnixMilli()-n.StatusSince) * time.Millisecond
		if down > opts.DownGrace {
			return lost, fmt.Sprintf("node has been down for %v (grace %v)", down.Round(time.Second), opts.DownGrace)
		}
		return downGrace, fmt.Sprintf("node is down (for %v, within the grace of %v)", max(down, 0).Round(time.Second), opts.DownGrace)
	}
	return leaving, fmt.Sprintf("node is %s", n.Status)
}

// hasModel reports whether the node holds the model on disk.
func (n *nodeView) hasModel(canon string, opts *Options) bool {
	if len(n.n.Models) == 0 {
		return false
	}
	if n.disk == nil {
		n.disk = make(map[string]bool, len(n.n.Models))
		for _, m := range n.n.Models {
			n.disk[canonicalModel(m, opts)] = true
		}
	}
	return n.disk[canon]
}

// canonicalModel is the name a model is matched under: the catalog's name
// for it when it has one ("deepseek-r1" is "deepseek-r1:8b"), else the
// normalised name.
func canonicalModel(name string, opts *Options) string {
	if m, ok := opts.lookup(name); ok {
		return strings.ToLower(m.Name)
	}
	if k, err := models.NormalizeName(name); err == nil {
		return k
	}
	return strings.ToLower(name)
}

// gpuPositions returns the positions of the node's GPUs that satisfy the
// GPU constraints, or nil when there are none to satisfy.
func gpuPositions(n *state.Node, cs Constraints) []int {
	if len(cs.GPU) == 0 {
		return nil
	}
	var pos []int
	for i, g := range n.GPUs {
		// GPUs of one model, the usual case, are matched once.
		same := i > 0 && g.Model == n.GPUs[0].Model
		if same && len(pos) > 0 || !same && cs.MatchGPU(g.Model) {
			pos = append(pos, i)
		}
	}
	if len(pos) == len(n.GPUs) {
		return allPositions(len(pos))
	}
	if pos == nil {
		pos = []int{}
	}
	return pos
}

// firstPositions holds 0, 1, 2, ...: allPositions shares it.
var firstPositions = func() []int {
	p := make([]int, 64)
	for i := range p {
		p[i] = i
	}
	return p
}()

// allPositions returns the positions 0..k-1, shared and read-only for
// the usual GPU counts.
func allPositions(k int) []int {
	if k <= len(firstPositions) {
		return firstPositions[:k:k]
	}
	p := make([]int, k)
	for i := range p {
		p[i] = i
	}
	return p
}

// gpusFor returns the GPU positions a job may use on a node; nil is all.
func (j *job) gpusFor(n *nodeView) []int {
	if j.elig == nil || len(j.elig.cons.GPU) == 0 {
		return nil
	}
	if g, ok := j.elig.gpus[n]; ok {
		return g
	}
	g := gpuPositions(n.n, j.elig.cons)
	j.elig.gpus[n] = g
	return g
}
