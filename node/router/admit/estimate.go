package admit

import "time"

// sample feeds one hold time (from Acquire's return to Release) into the
// moving average. Called with q.mu held.
func (q *Queue) sample(d time.Duration) {
	d = max(d, 0)
	q.held++
	if q.held == 1 {
		q.hold = float64(d)
		return
	}
	q.hold = holdAlpha*float64(d) + (1-holdAlpha)*q.hold
}

// meanHold is the moving average of hold times; ok is false until enough
// tickets were released for it to mean something. Called with q.mu held.
func (q *Queue) meanHold() (mean time.Duration, ok bool) {
	if q.held < minHoldSamples {
		return 0, false
	}
	return time.Duration(q.hold), true
}

// estimate is how long a new request of key would wait: the waiters
// served before it, plus itself, over the slots, times the mean hold
// time. ok is false while the mean is unknown. Called with q.mu held.
func (q *Queue) estimate(key string) (est time.Duration, ok bool) {
	mean, ok := q.meanHold()
	if !ok {
		return 0, false
	}
	n := q.wait.ahead(key) + 1
	return time.Duration(float64(n) / float64(q.slots) * float64(mean)), true
}

// slotFreesIn estimates how soon some running generation ends: the mean
// hold time over the slots; 0 while the mean is unknown. Called with q.mu
// held.
func (q *Queue) slotFreesIn() time.Duration {
	mean, _ := q.meanHold()
	return mean / time.Duration(q.slots)
}
