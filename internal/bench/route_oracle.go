package bench

import (
	"slices"
	"sync"
	"time"
)

// Oracle is the reference router of the routing benchmark: it dispatches
// every request itself, knows how long each request takes on each server
// and so the exact state of every server, and sends each arrival where it
// would finish first. It never gives a server more requests than its slots
// (the generations it runs at once): the rest wait in the oracle's own FIFO
// queue of that server, and the time they spend there is their queue wait.
//
// An Oracle is safe for concurrent use.
type Oracle struct {
	mu  sync.Mutex
	srv []oracleServer
}

type oracleServer struct {
	slots   int
	running []oracleJob
	queue   []oracleJob
}

type oracleJob struct {
	id      uint64
	service time.Duration
	// end is when a running job is expected to finish.
	end time.Time
}

// NewOracle returns an oracle over servers with these slot counts (each
// at least 1).
func NewOracle(slots []int) *Oracle {
	o := &Oracle{srv: make([]oracleServer, len(slots))}
	for i, n := range slots {
		o.srv[i].slots = max(n, 1)
	}
	return o
}

// Assign places request id, arriving at now, that takes service[i] on
// server i. It returns the server it chose and whether the request starts
// now; one that does not start waits until a Finish on that server hands
// it out.
func (o *Oracle) Assign(id uint64, now time.Time, service []time.Duration) (server int, start bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	best, bestEnd, bestFill := -1, time.Time{}, 0.0
	for i := range o.srv {
		end := o.srv[i].finish(now, service[i])
		fill := float64(len(o.srv[i].running)+len(o.srv[i].queue)) / float64(o.srv[i].slots)
		if best < 0 || end.Before(bestEnd) || (end.Equal(bestEnd) && fill < bestFill) {
			best, bestEnd, bestFill = i, end, fill
		}
	}
	s := &o.srv[best]
	job := oracleJob{id: id, service: service[best]}
	if len(s.running) < s.slots && len(s.queue) == 0 {
		job.end = now.Add(job.service)
		s.running = append(s.running, job)
		return best, true
	}
	s.queue = append(s.queue, job)
	return best, false
}

// Finish records that request id ended on server at now (whether it
// succeeded or not) and returns the queued request that starts in its
// slot, if any.
func (o *Oracle) Finish(server int, id uint64, now time.Time) (next uint64, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &o.srv[server]
	s.running = slices.DeleteFunc(s.running, func(j oracleJob) bool { return j.id == id })
	if len(s.running) >= s.slots || len(s.queue) == 0 {
		return 0, false
	}
	job := s.queue[0]
	s.queue = s.queue[1:]
	job.end = now.Add(job.service)
	s.running = append(s.running, job)
	return job.id, true
}

// Predict returns when a request arriving at now that takes service on
// server would finish there.
func (o *Oracle) Predict(server int, now time.Time, service time.Duration) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.srv[server].finish(now, service)
}

// Busy returns the requests running and queued on server.
func (o *Oracle) Busy(server int) (running, queued int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.srv[server].running), len(o.srv[server].queue)
}

// finish simulates the server's FIFO queue: every slot frees when its
// request is expected to end (now at the earliest, for one running late),
// each queued request takes the earliest free slot, and so does the new
// one.
func (s *oracleServer) finish(now time.Time, service time.Duration) time.Time {
	free := make([]time.Time, 0, s.slots)
	for _, j := range s.running {
		free = append(free, later(j.end, now))
	}
	for len(free) < s.slots {
		free = append(free, now)
	}
	for _, j := range s.queue {
		i := earliest(free)
		free[i] = free[i].Add(j.service)
	}
	return free[earliest(free)].Add(service)
}

func earliest(ts []time.Time) int {
	best := 0
	for i, t := range ts {
		if t.Before(ts[best]) {
			best = i
		}
	}
	return best
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
