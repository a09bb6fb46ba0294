package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// plan writes the run's outcome.
func (r *run) plan() Plan {
	p := Plan{Index: r.snap.Index, Deployments: make([]DeploymentPlan, 0, len(r.jobs))}
	var out outBuf
	for _, j := range r.jobs {
		dp := DeploymentPlan{Name: j.d.Name, Model: j.d.Model, Version: j.d.Version, Priority: j.d.Priority, Replicas: j.d.Replicas, Idle: j.d.Idle}
		if len(j.slots) > 0 {
			dp.Placements = out.assignments(len(j.slots))
		}
		for i, s := range j.sortedSlots() {
			dp.Placements[i] = out.assignment(s)
		}
		dp.Status, dp.Reason = r.status(j)
		p.Deployments = append(p.Deployments, dp)
	}
	byKey := func(d1, n1, d2, n2 string) int {
		if c := cmp.Compare(d1, d2); c != 0 {
			return c
		}
		return cmp.Compare(n1, n2)
	}
	p.Removals = r.removals
	slices.SortStableFunc(p.Removals, func(a, b Removal) int { return byKey(a.Deployment, a.Node, b.Deployment, b.Node) })
	p.Evictions = r.evictions
	slices.SortStableFunc(p.Evictions, func(a, b Eviction) int { return byKey(a.Deployment, a.Node, b.Deployment, b.Node) })
	return p
}

// outBuf hands out the slices of a plan from large blocks.
type outBuf struct {
	as   []Assignment
	gpus []GPUReservation
}

func (o *outBuf) assignments(k int) []Assignment {
	if cap(o.as)-len(o.as) < k {
		o.as = make([]Assignment, 0, max(1024, k))
	}
	n := len(o.as)
	o.as = o.as[:n+k]
	return o.as[n : n+k : n+k]
}

func (o *outBuf) reservations(k int) []GPUReservation {
	if cap(o.gpus)-len(o.gpus) < k {
		o.gpus = make([]GPUReservation, 0, max(2048, k))
	}
	n := len(o.gpus)
	o.gpus = o.gpus[:n+k]
	return o.gpus[n : n+k : n+k]
}

// assignment writes a slot as the plan shows it.
func (o *outBuf) assignment(s *slot) Assignment {
	a := Assignment{Node: s.node.n.ID, Action: ActionKeep, Reason: s.reason}
	switch {
	case s.placed == nil:
		a.Action = ActionPlace
	case s.drain:
		a.Action = ActionDrain
	}
	if len(s.shares) == 0 {
		return a
	}
	a.GPUs = o.reservations(len(s.shares))
	for i, sh := range s.shares {
		a.GPUs[i] = GPUReservation{Index: s.node.n.GPUs[sh.pos].Index, Bytes: sh.bytes}
	}
	if len(a.GPUs) > 1 {
		slices.SortFunc(a.GPUs, func(x, y GPUReservation) int { return cmp.Compare(x.Index, y.Index) })
	}
	return a
}

func assignment(s *slot) Assignment {
	var o outBuf
	return o.assignment(s)
}

// status sums up where a deployment stands after the run.
func (r *run) status(j *job) (Status, string) {
	if !j.valid() {
		return StatusInvalid, j.err
	}
	if j.d.Idle {
		return StatusIdle, "no request within the idle timeout; the next one wakes it"
	}
	want, have := j.d.Replicas, j.active
	drains := len(j.slots) - j.active
	if have >= want {
		if drains > 0 {
			return StatusOK, fmt.Sprintf("%d replica(s) kept on leaving nodes until their replacements are ready", drains)
		}
		return StatusOK, ""
	}
	st := StatusPartial
	if have == 0 {
		st = StatusUnplaceable
	}
	reason := fmt.Sprintf("%d of %d replicas placed: %s", have, want, r.diagnose(j))
	if drains > 0 {
		reason += fmt.Sprintf("; %d replica(s) kept on leaving nodes meanwhile", drains)
	}
	return st, reason
}

// diagnose says why no node takes another replica of j: the filters'
// verdicts over every node, counted.
func (r *run) diagnose(j *job) string {
	var notReady, gpu, holds, vram int
	byCons := map[string]int{}
	for _, n := range r.nodes {
		c := check{r: r, j: j, n: n}
		switch {
		case nodeReady(&c) != "":
			notReady++
		case labelsMatch(&c) != "":
			byCons[j.elig.cons.Labels[j.elig.cons.failing(n.n.Labels)].String()]++
		case gpuModelMatch(&c) != "":
			gpu++
		case onePerNode(&c) != "":
			holds++
		default:
			vram++ // the fast path and the layout rejected it
		}
	}
	where := ""
	if j.elig.text != "" {
		where = " with " + j.elig.text
	}
	head := fmt.Sprintf("no ready node%s is left", where)
	if vram > 0 {
		head = fmt.Sprintf("no ready node%s has %s of VRAM free for %s", where, gib(j.prof.need1), j.d.Model)
		if !r.opts.NoPreemption && r.haveSlots && r.lowest < j.d.Priority {
			head += ", even by evicting lower-priority replicas"
		}
	}
	parts := []string{}
	add := func(k int, what string) {
		if k > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k, what))
		}
	}
	add(vram, "short of VRAM")
	add(holds, "hold a replica")
	for _, k := range sortedKeys(byCons) {
		add(byCons[k], "fail "+k)
	}
	add(gpu, "have no matching GPU")
	add(notReady, "not ready")
	if len(parts) == 0 {
		return head + " (the cluster has no nodes)"
	}
	return fmt.Sprintf("%s (of %d nodes: %s)", head, len(r.nodes), strings.Join(parts, ", "))
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
