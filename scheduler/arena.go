package scheduler

// arena hands out slots and shares from large blocks: a run over a big
// cluster makes tens of thousands of them, and one allocation per block
// spares the allocator and the collector.
type arena struct {
	slots  []slot
	shares []share
	lists  []*slot
}

// slotList returns an empty list of slots with room for k.
func (a *arena) slotList(k int) []*slot {
	if k > 64 {
		return make([]*slot, 0, k)
	}
	if cap(a.lists)-len(a.lists) < k {
		a.lists = make([]*slot, 0, 4096)
	}
	n := len(a.lists)
	a.lists = a.lists[:n+k]
	return a.lists[n : n : n+k]
}

func (a *arena) slot() *slot {
	if len(a.slots) == cap(a.slots) {
		a.slots = make([]slot, 0, max(1024, 2*cap(a.slots)))
	}
	a.slots = a.slots[:len(a.slots)+1]
	return &a.slots[len(a.slots)-1]
}

// share returns k zero shares whose capacity ends with them.
func (a *arena) share(k int) []share {
	if cap(a.shares)-len(a.shares) < k {
		a.shares = make([]share, 0, max(4096, k))
	}
	n := len(a.shares)
	a.shares = a.shares[:n+k]
	return a.shares[n : n+k : n+k]
}
