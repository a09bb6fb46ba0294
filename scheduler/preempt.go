package scheduler

import (
	"cmp"
	"fmt"
	"slices"
)

// Preemption. A replica that fits no node may take the place of replicas
// of deployments of a strictly lower priority, never of an equal or
// higher one. On each node that passes the other filters it picks the
// victims greedily, lowest priority and then largest first, until the
// replica fits, then lets go of any victim it turns out not to need. Of
// the nodes, it takes the one with the fewest victims, then the lowest
// highest victim priority, then the lowest priority sum, then the first
// by id.

// preemption is a way to place a replica on a node by evicting victims.
type preemption struct {
	n       *nodeView
	victims []*slot
	maxPrio int
	sumPrio int
}

func (p *preemption) better(q *preemption) bool {
	if c := cmp.Compare(len(p.victims), len(q.victims)); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(p.maxPrio, q.maxPrio); c != 0 {
		return c < 0
	}
	return p.sumPrio < q.sumPrio
}

// preempt places a replica of j by evicting lower-priority replicas.
func (r *run) preempt(j *job) bool {
	if !r.haveSlots || r.lowest >= j.d.Priority {
		return false
	}
	var best *preemption
	r.stamp(j)
	for _, cd := range r.candidates(j) {
		if r.stamps[cd.n.pos] == r.epoch {
			continue
		}
		if p := r.victimsOn(j, cd.n); p != nil && (best == nil || p.better(best)) {
			best = p
		}
	}
	if best == nil {
		return false
	}
	for _, v := range best.victims {
		r.evict(v, j)
	}
	s := newSlot(j, best.n)
	if !r.tryAdd(s) {
		return false
	}
	s.reason = fmt.Sprintf("evicted %d replica(s) of lower priority to fit", len(best.victims))
	j.add(s)
	r.noteSlot(j)
	return true
}

// victimsOn finds the fewest, lowest-priority replicas on n whose
// eviction lets a replica of j fit, or nil.
func (r *run) victimsOn(j *job, n *nodeView) *preemption {
	var pool []*slot
	for _, s := range n.slots {
		if s.job.d.Priority < j.d.Priority && s.job.valid() {
			pool = append(pool, s)
		}
	}
	if len(pool) == 0 {
		return nil
	}
	add := newSlot(j, n)
	if _, ok := r.trial(add, pool); !ok {
		return nil
	}
	slices.SortStableFunc(pool, func(a, b *slot) int {
		if c := cmp.Compare(a.job.d.Priority, b.job.d.Priority); c != 0 {
			return c
		}
		return cmp.Compare(b.reserved(), a.reserved())
	})
	var chosen []*slot
	for _, v := range pool {
		chosen = append(chosen, v)
		if _, ok := r.trial(add, chosen); ok {
			break
		}
	}
	for i := len(chosen) - 1; i >= 0 && len(chosen) > 1; i-- {
		without := slices.Delete(slices.Clone(chosen), i, i+1)
		if _, ok := r.trial(add, without); ok {
			chosen = without
		}
	}
	p := &preemption{n: n, victims: chosen, maxPrio: chosen[0].job.d.Priority}
	for _, v := range chosen {
		p.maxPrio = max(p.maxPrio, v.job.d.Priority)
		p.sumPrio += v.job.d.Priority
	}
	return p
}

// evict removes a victim for j. A replica this run placed is withdrawn
// without a record: the state never held it.
func (r *run) evict(v *slot, by *job) {
	r.detach(v)
	if v.placed == nil {
		return
	}
	r.evictions = append(r.evictions, Eviction{
		Deployment: v.job.d.Name, Node: v.node.n.ID, Priority: v.job.d.Priority,
		By: by.d.Name, ByPriority: by.d.Priority,
		Reason: fmt.Sprintf("evicted for %s (priority %d > %d), which fit no node otherwise", by.d.Name, by.d.Priority, v.job.d.Priority),
	})
}
