package bench

import "time"

// Misroutes judges, after the fact, where the successful requests of a run
// went. For each request it counts, at its arrival, the requests each node
// held (arrived earlier and not yet answered) and estimates when the
// request would have finished on each node: its service there times one
// plus the requests ahead of it per slot, rounded down. A request is
// misrouted when another node would have finished it more than a tenth
// sooner; regret is the mean of what the best node would have saved, over
// every request. It is a rough diagnostic (a running request is counted
// whole), the same for every policy.
func Misroutes(samples []RouteSample, service map[string]time.Duration, slots map[string]int) (share float64, regret time.Duration) {
	type span struct {
		node       string
		start, end time.Duration
	}
	var spans []span
	for _, s := range samples {
		if s.OK() && s.Node != "" && service[s.Node] > 0 {
			spans = append(spans, span{s.Node, s.Start, s.Start + s.Latency})
		}
	}
	if len(spans) == 0 {
		return 0, 0
	}
	var bad int
	var total time.Duration
	for i, me := range spans {
		busy := map[string]int{}
		for j, o := range spans {
			if j != i && o.start < me.start && o.end > me.start {
				busy[o.node]++
			}
		}
		finish := func(n string) time.Duration {
			return service[n] * time.Duration(1+busy[n]/max(1, slots[n]))
		}
		chosen, best := finish(me.node), finish(me.node)
		for n := range service {
			best = min(best, finish(n))
		}
		if float64(chosen) > 1.1*float64(best) {
			bad++
		}
		total += chosen - best
	}
	return float64(bad) / float64(len(spans)), total / time.Duration(len(spans))
}
