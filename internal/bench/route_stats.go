package bench

import (
	"fmt"
	"time"
)

// RouteSample is the outcome of one request of the routing benchmark.
type RouteSample struct {
	// Node is the node (or simulator) that served the request; "" when
	// unknown.
	Node string `json:"node,omitempty"`
	// Queue is the time the request waited for a slot: in the oracle's
	// queue, or in sovra's admission queue (its Sovra-Queue-Ms header).
	// HasQueue is false when the answer did not say.
	Queue    time.Duration `json:"queue_ns"`
	HasQueue bool          `json:"has_queue"`
	// TTFT is the time from the request's arrival to the first event that
	// carries generated text, as the client saw it.
	TTFT time.Duration `json:"ttft_ns"`
	// Latency is the time from arrival to the end of the stream.
	Latency time.Duration `json:"latency_ns"`
	// Route and Attempts are sovra's Sovra-Route and Sovra-Attempts headers.
	Route    string `json:"route,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	// Err says why the request failed; "" for a success.
	Err string `json:"err,omitempty"`
	// Conv and Turn place a request of the multi-turn workload: the
	// conversation (from 0) and the turn in it (0 for the first). Conv is
	// -1 for a single request.
	Conv int `json:"conv"`
	Turn int `json:"turn"`
	// Start is the request's arrival, from the start of its run.
	Start time.Duration `json:"start_ns"`
}

// OK reports whether the request succeeded.
func (s RouteSample) OK() bool { return s.Err == "" }

// RouteFigures summarize the samples of one policy at one load.
type RouteFigures struct {
	Sent       int    `json:"sent"`
	OK         int    `json:"ok"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Queue summarizes the queue waits of the successful requests that
	// reported one; QueueKnown counts those.
	Queue      Summary `json:"queue"`
	QueueKnown int     `json:"queue_known"`
	// TTFT and Latency summarize the successful requests.
	TTFT    Summary `json:"ttft"`
	Latency Summary `json:"latency"`
	// Nodes counts the successful requests each node served (by Node;
	// requests of unknown node are not counted).
	Nodes map[string]int `json:"nodes"`
	// Routes counts the successful requests by Sovra-Route.
	Routes map[string]int `json:"routes,omitempty"`
	// Retried counts successful requests that took more than one attempt.
	Retried int `json:"retried"`
}

// SummarizeRoute computes the figures of a set of samples.
func SummarizeRoute(samples []RouteSample) RouteFigures {
	f := RouteFigures{Sent: len(samples), Nodes: map[string]int{}, Routes: map[string]int{}}
	var queue, ttft, lat []time.Duration
	for _, s := range samples {
		if !s.OK() {
			f.Errors++
			if f.FirstError == "" {
				f.FirstError = s.Err
			}
			continue
		}
		f.OK++
		ttft = append(ttft, s.TTFT)
		lat = append(lat, s.Latency)
		if s.HasQueue {
			queue = append(queue, s.Queue)
		}
		if s.Node != "" {
			f.Nodes[s.Node]++
		}
		if s.Route != "" {
			f.Routes[s.Route]++
		}
		if s.Attempts > 1 {
			f.Retried++
		}
	}
	f.Queue, f.QueueKnown = Summarize(queue), len(queue)
	f.TTFT, f.Latency = Summarize(ttft), Summarize(lat)
	return f
}

// NodeLoad is one node's share of the requests set against its share of
// the cluster's capacity.
type NodeLoad struct {
	Node     string  `json:"node"`
	Requests int     `json:"requests"`
	Share    float64 `json:"share"`
	CapShare float64 `json:"capacity_share"`
	// Load is Share / CapShare: 1 when the node got exactly its part.
	Load float64 `json:"load"`
	// Relative is Load divided by the cluster's average load, the mean of
	// the nodes' loads weighted by their capacities (the cluster's
	// requests over its capacity). That average is 1 whenever any request
	// was counted, so Relative equals Load then; it is kept apart so that
	// the report says which figure a target holds.
	Relative float64 `json:"relative"`
}

// NodeLoads computes, for each node in order, its share of the requests
// counted in requests and of the capacity (any unit: requests per second,
// slots times speed), its load (the first over the second) and that load
// relative to the cluster's average. Nodes without capacity get a zero
// load.
func NodeLoads(nodes []string, requests map[string]int, capacity map[string]float64) []NodeLoad {
	var total int
	var capTotal float64
	for _, n := range nodes {
		total += requests[n]
		capTotal += capacity[n]
	}
	out := make([]NodeLoad, len(nodes))
	var avg float64 // capacity-weighted mean load
	for i, n := range nodes {
		l := NodeLoad{Node: n, Requests: requests[n]}
		if total > 0 {
			l.Share = float64(requests[n]) / float64(total)
		}
		if capTotal > 0 {
			l.CapShare = capacity[n] / capTotal
		}
		if l.CapShare > 0 {
			l.Load = l.Share / l.CapShare
		}
		avg += l.CapShare * l.Load
		out[i] = l
	}
	if avg > 0 {
		for i := range out {
			out[i].Relative = out[i].Load / avg
		}
	}
	return out
}

// MaxRelative is the highest Relative load of loads, and its node.
func MaxRelative(loads []NodeLoad) (string, float64) {
	node, best := "", 0.0
	for _, l := range loads {
		if l.Relative > best {
			node, best = l.Node, l.Relative
		}
	}
	return node, best
}

// Affinity counts, over the follow-up turns of conversations (Turn > 0)
// that succeeded after a successful previous turn with a known node, how
// many there are and how many the node of the previous turn served.
func Affinity(samples []RouteSample) (followUps, same int) {
	type key struct{ conv, turn int }
	node := map[key]string{}
	for _, s := range samples {
		if s.Conv >= 0 && s.OK() && s.Node != "" {
			node[key{s.Conv, s.Turn}] = s.Node
		}
	}
	for _, s := range samples {
		if s.Conv < 0 || s.Turn == 0 || !s.OK() || s.Node == "" {
			continue
		}
		prev, ok := node[key{s.Conv, s.Turn - 1}]
		if !ok {
			continue
		}
		followUps++
		if prev == s.Node {
			same++
		}
	}
	return followUps, same
}

// FormatRatio prints a ratio as "1.07x", or "-" when it is unknown (0).
func FormatRatio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// RouteCheck is one target of the routing benchmark: a figure held
// against a limit from above (AtLeast false: Value <= Limit) or below.
type RouteCheck struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Limit   float64 `json:"limit"`
	Unit    string  `json:"unit"`
	AtLeast bool    `json:"at_least"`
	Pass    bool    `json:"pass"`
}

// NewRouteCheck evaluates value against limit: at most limit, or at least
// it when atLeast is set.
func NewRouteCheck(name string, value, limit float64, unit string, atLeast bool) RouteCheck {
	pass := value <= limit
	if atLeast {
		pass = value >= limit
	}
	return RouteCheck{Name: name, Value: value, Limit: limit, Unit: unit, AtLeast: atLeast, Pass: pass}
}

// String prints the check as one line: its name, the value, the limit
// with its comparison, and PASS or FAIL.
func (c RouteCheck) String() string {
	verdict, op := "PASS", "<="
	if !c.Pass {
		verdict = "FAIL"
	}
	if c.AtLeast {
		op = ">="
	}
	return fmt.Sprintf("%s: %s %s %s  %s", c.Name, num(c.Value, c.Unit), op, num(c.Limit, c.Unit), verdict)
}
