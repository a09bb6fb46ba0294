package admit

import (
	"container/list"
	"time"
)

// waitState is where a waiter stands; it leaves stateWaiting once, under
// the queue's lock, and its ready channel is closed at that moment.
type waitState uint8

const (
	stateWaiting waitState = iota
	stateGranted
	stateRejected
)

// waiter is one request waiting for a slot.
type waiter struct {
	kq        *keyQueue
	elem      *list.Element // in kq.waiters
	seq       uint64        // arrival order over the whole queue
	since     time.Time     // when it started to wait
	ready     chan struct{} // closed when state leaves stateWaiting
	state     waitState
	grantedAt time.Time    // set with stateGranted
	err       *RejectError // set with stateRejected
}

// keyQueue holds one key's waiters, oldest first.
type keyQueue struct {
	name    string
	waiters list.List     // of *waiter
	elem    *list.Element // in fairQueue.ring
}

// fairQueue orders waiters: round-robin over the keys that have waiters,
// FIFO within a key. A key that starts waiting joins the rotation last, so
// it is served after every key already waiting has had one turn.
type fairQueue struct {
	keys map[string]*keyQueue
	ring list.List     // of *keyQueue, in rotation order
	next *list.Element // in ring: the key served next; nil when empty
	n    int           // waiters in all keys
	seq  uint64
}

// len is the number of waiters.
func (f *fairQueue) len() int { return f.n }

// keyCount is the number of distinct keys that have waiters.
func (f *fairQueue) keyCount() int { return f.ring.Len() }

// count is the number of waiters the key holds.
func (f *fairQueue) count(key string) int {
	if kq := f.keys[key]; kq != nil {
		return kq.waiters.Len()
	}
	return 0
}

// push queues a waiter for key behind that key's other waiters.
func (f *fairQueue) push(key string, now time.Time) *waiter {
	kq := f.keys[key]
	if kq == nil {
		kq = f.join(key)
	}
	f.seq++
	w := &waiter{kq: kq, seq: f.seq, since: now, ready: make(chan struct{})}
	w.elem = kq.waiters.PushBack(w)
	f.n++
	return w
}

// join adds a key at the end of the rotation, just before the key that is
// served next.
func (f *fairQueue) join(key string) *keyQueue {
	if f.keys == nil {
		f.keys = make(map[string]*keyQueue)
	}
	kq := &keyQueue{name: key}
	f.keys[key] = kq
	if f.next == nil {
		kq.elem = f.ring.PushBack(kq)
		f.next = kq.elem
	} else {
		kq.elem = f.ring.InsertBefore(kq, f.next)
	}
	return kq
}

// pop removes and returns the waiter to serve next, or nil when none
// waits: the oldest waiter of the key whose turn it is. The turn then
// passes to the following key.
func (f *fairQueue) pop() *waiter {
	if f.next == nil {
		return nil
	}
	kq := f.next.Value.(*keyQueue)
	f.next = f.after(f.next)
	w := kq.waiters.Front().Value.(*waiter)
	f.remove(w)
	return w
}

// remove takes a waiter out of the queue wherever it stands.
func (f *fairQueue) remove(w *waiter) {
	kq := w.kq
	kq.waiters.Remove(w.elem)
	f.n--
	if kq.waiters.Len() == 0 {
		f.leave(kq)
	}
}

// leave takes a key without waiters out of the rotation.
func (f *fairQueue) leave(kq *keyQueue) {
	if f.next == kq.elem {
		f.next = f.after(kq.elem)
		if f.next == kq.elem {
			f.next = nil
		}
	}
	f.ring.Remove(kq.elem)
	delete(f.keys, kq.name)
}

// after is the ring element that follows e, wrapping around.
func (f *fairQueue) after(e *list.Element) *list.Element {
	if n := e.Next(); n != nil {
		return n
	}
	return f.ring.Front()
}

// victim is the waiter to push out when the queue is full: the newest
// waiter of the key that holds the most waiting places. Between keys that
// hold as many, the one whose newest waiter arrived last loses it.
func (f *fairQueue) victim() *waiter {
	var best *waiter
	for e := f.ring.Front(); e != nil; e = e.Next() {
		kq := e.Value.(*keyQueue)
		w := kq.waiters.Back().Value.(*waiter)
		if best == nil {
			best = w
			continue
		}
		n, bn := kq.waiters.Len(), best.kq.waiters.Len()
		if n > bn || (n == bn && w.seq > best.seq) {
			best = w
		}
	}
	return best
}

// ahead estimates how many waiters are served before a new waiter of key:
// the key's own waiters, and from every other key at most one more than
// that, since the rotation gives each key one turn in each round.
func (f *fairQueue) ahead(key string) int {
	own := f.count(key)
	sum := own
	for e := f.ring.Front(); e != nil; e = e.Next() {
		kq := e.Value.(*keyQueue)
		if kq.name != key {
			sum += min(kq.waiters.Len(), own+1)
		}
	}
	return sum
}
