// Package bench holds the measuring parts of sovra-bench: an open-loop load
// generator, latency percentiles, per-process CPU accounting from /proc,
// counting of SSE and NDJSON stream events, and the minimal fasthttp reverse
// proxy that serves as the baseline sovra is compared with.
package bench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 to 100) of sorted, which must be
// in ascending order, by the nearest-rank method: the smallest value that at
// least p percent of the values do not exceed. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	// p*n/100 rather than p/100*n keeps exact ranks exact (99*100/100).
	rank := int(math.Ceil(p * float64(n) / 100))
	rank = max(rank, 1)
	return sorted[rank-1]
}

// Summary describes a set of latencies.
type Summary struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize computes the Summary of values without changing their order.
func Summarize(values []time.Duration) Summary {
	if len(values) == 0 {
		return Summary{}
	}
	s := slices.Clone(values)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	return Summary{
		N:    len(s),
		Min:  s[0],
		P50:  Percentile(s, 50),
		P90:  Percentile(s, 90),
		P99:  Percentile(s, 99),
		Max:  s[len(s)-1],
		Mean: sum / time.Duration(len(s)),
	}
}

func sortedCopy(values []time.Duration) []time.Duration {
	s := slices.Clone(values)
	slices.Sort(s)
	return s
}
