package scheduler

import (
	"cmp"
	"slices"
)

// A node's layout: how its replicas sit on its GPUs.
//
// Ollama decides where a model's layers go when it loads it and sovra
// cannot pin a model to GPUs, so the scheduler keeps an account instead:
// it lays a node's replicas out one by one, largest model first, each as
// Ollama would lay it over the memory the ones before left free (models
// package, Estimate). That layout is a pure function of the node and its
// replicas, so every run finds the same one again: the reservations in a
// plan are reproduced by the next run from the state alone, without
// being stored. A replica joins a node only if the node's whole layout,
// the newcomer included, still fits.

// byLayout is the order of a node's layout: larger models first, then by
// deployment name.
func byLayout(a, b *slot) int {
	if c := cmp.Compare(b.need, a.need); c != 0 {
		return c
	}
	return cmp.Compare(a.ord, b.ord) // the order of names
}

// fitShares lays one replica of j out over the free memory of n's GPUs
// (free is indexed by position in the node) and returns what it reserves,
// or ok false when it does not fit. A job without a profile reserves
// nothing.
func (r *run) fitShares(j *job, n *nodeView, free []uint64) (_ []share, ok bool) {
	if j.prof == nil {
		return nil, true
	}
	pos := j.gpusFor(n)
	vec := free
	if pos != nil {
		vec = make([]uint64, len(pos))
		for i, p := range pos {
			vec[i] = free[p]
		}
	}
	if i, need, v := j.prof.quick(vec); v != maybeSplit {
		if v == noFit {
			return nil, false
		}
		if pos != nil {
			i = pos[i]
		}
		sh := r.mem.share(1)
		sh[0] = share{pos: i, bytes: need}
		return sh, true
	}
	per := j.prof.split(vec)
	if per == nil {
		return nil, false
	}
	k := 0
	for _, b := range per {
		if b > 0 {
			k++
		}
	}
	out := r.mem.share(k)[:0]
	for i, b := range per {
		if b == 0 {
			continue
		}
		p := i
		if pos != nil {
			p = pos[i]
		}
		out = append(out, share{pos: p, bytes: b})
	}
	return out, true
}

// layOut lays slots out in order over n's capacity. It returns each
// slot's shares and the memory left free, or the index of the first slot
// that does not fit. The list of shares is scratch, good until the next
// call.
func (r *run) layOut(n *nodeView, slots []*slot) ([][]share, []uint64, int) {
	free := slices.Clone(n.cap)
	out := r.layBuf[:0]
	for range slots {
		out = append(out, nil)
	}
	r.layBuf = out
	for i, s := range slots {
		sh, ok := r.fitShares(s.job, n, free)
		if !ok {
			return nil, nil, i
		}
		for _, x := range sh {
			free[x.pos] -= x.bytes
		}
		out[i] = sh
	}
	return out, free, -1
}

// commit installs a layout computed by layOut for n.slots.
func (n *nodeView) commit(shares [][]share, free []uint64) {
	for i, s := range n.slots {
		s.shares = shares[i]
	}
	n.setFree(free)
}

func (n *nodeView) setFree(free []uint64) {
	n.free = free
	n.freeTotal = 0
	for _, f := range free {
		n.freeTotal += f
	}
}

// settle lays the node out; while it does not fit, the replica of the
// lowest priority (the smallest of equals) leaves it. Replicas the state
// holds can stop fitting when a node's GPUs, a deployment's model or the
// options change.
func (r *run) settle(n *nodeView) {
	for {
		shares, free, bad := r.layOut(n, n.slots)
		if bad < 0 {
			n.commit(shares, free)
			return
		}
		victim := n.slots[0]
		for _, s := range n.slots[1:] {
			if s.job.d.Priority <= victim.job.d.Priority {
				victim = s
			}
		}
		r.unlink(victim)
		r.remove(victim, CauseInfeasible, "no longer fits on the node's GPUs beside its other replicas")
	}
}

// tryAdd puts s on its node if the node's layout still fits with it.
func (r *run) tryAdd(s *slot) bool {
	n := s.node
	i, _ := slices.BinarySearchFunc(n.slots, s, byLayout)
	if i == len(n.slots) {
		// Last in the layout: the others do not move.
		sh, ok := r.fitShares(s.job, n, n.free)
		if !ok {
			return false
		}
		s.shares = sh
		n.slots = append(n.slots, s)
		n.take(sh)
		return true
	}
	slots := slices.Insert(slices.Clone(n.slots), i, s)
	shares, free, bad := r.layOut(n, slots)
	if bad >= 0 {
		return false
	}
	n.slots = slots
	n.commit(shares, free)
	return true
}

func (n *nodeView) take(sh []share) {
	for _, x := range sh {
		n.free[x.pos] -= x.bytes
		n.freeTotal -= x.bytes
	}
}

func (n *nodeView) give(sh []share) {
	for _, x := range sh {
		n.free[x.pos] += x.bytes
		n.freeTotal += x.bytes
	}
}

// trial returns what add would reserve on its node with the slots in
// remove gone, without changing anything; ok is false when the layout
// does not fit.
func (r *run) trial(add *slot, remove []*slot) (_ []share, ok bool) {
	n := add.node
	slots := make([]*slot, 0, len(n.slots)+1)
	for _, s := range n.slots {
		if !slices.Contains(remove, s) {
			slots = append(slots, s)
		}
	}
	i, _ := slices.BinarySearchFunc(slots, add, byLayout)
	if i == len(slots) && len(remove) == 0 {
		return r.fitShares(add.job, n, n.free)
	}
	slots = slices.Insert(slots, i, add)
	shares, _, bad := r.layOut(n, slots)
	if bad >= 0 {
		return nil, false
	}
	return shares[i], true
}

// unlink takes s off its node and its job, leaving the layout as it is.
func (r *run) unlink(s *slot) {
	n := s.node
	if i := slices.Index(n.slots, s); i >= 0 {
		n.slots = slices.Delete(n.slots, i, i+1)
	}
	s.job.drop(s)
}

// detach takes s off its node and lays the node out again. The last
// replica of a layout leaves the others where they are.
func (r *run) detach(s *slot) {
	n := s.node
	last := len(n.slots) > 0 && n.slots[len(n.slots)-1] == s
	r.unlink(s)
	if last {
		n.give(s.shares)
		return
	}
	r.settle(n)
}
