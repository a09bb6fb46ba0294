package quota

import "time"

// ring counts requests and tokens in n slots of width each: a sliding
// window of n*width, in steps of width.
type ring struct {
	width time.Duration
	epoch []int64 // the step each slot counts (a slot is stale when older)
	req   []int64
	tok   []int64
}

func newRing(n int, width time.Duration) ring {
	return ring{width: width, epoch: make([]int64, n), req: make([]int64, n), tok: make([]int64, n)}
}

func (r *ring) step(t time.Time) int64 { return t.UnixNano() / int64(r.width) }

// slot returns the slot of step e, cleared if it counted an older step.
func (r *ring) slot(e int64) int {
	i := int(e % int64(len(r.epoch)))
	if r.epoch[i] != e {
		r.epoch[i], r.req[i], r.tok[i] = e, 0, 0
	}
	return i
}

// add counts req requests and tok tokens at now.
func (r *ring) add(now time.Time, req, tok int64) {
	i := r.slot(r.step(now))
	r.req[i] += req
	r.tok[i] += tok
}

// adjust adds tok tokens to the slot of at, if the window still holds it.
func (r *ring) adjust(at, now time.Time, tok int64) {
	e := r.step(at)
	if e <= r.step(now)-int64(len(r.epoch)) {
		return
	}
	if i := int(e % int64(len(r.epoch))); r.epoch[i] == e {
		r.tok[i] += tok
	}
}

// sum is what the window holds at now, and when its oldest counted slot
// leaves it (zero when it holds nothing).
func (r *ring) sum(now time.Time) (req, tok int64, reset time.Time) {
	cur := r.step(now)
	oldest := int64(-1)
	for i, e := range r.epoch {
		if e <= cur-int64(len(r.epoch)) || e > cur || (r.req[i] == 0 && r.tok[i] == 0) {
			continue
		}
		req += r.req[i]
		tok += r.tok[i]
		if oldest < 0 || e < oldest {
			oldest = e
		}
	}
	if oldest >= 0 {
		reset = time.Unix(0, (oldest+int64(len(r.epoch)))*int64(r.width))
	}
	return req, tok, reset
}
