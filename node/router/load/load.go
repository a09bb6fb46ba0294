// Package load keeps the live load a router needs to choose a replica:
// this node's own load per model (requests running and queued, slots, and
// moving averages of time to first token, decode speed and answer
// length), the reports that peers send of theirs, and this node's count of
// the requests it has sent to each peer since that peer's last report.
// Nothing here goes through raft: reports travel between nodes directly.
//
// Tracker averages this node's own measurements, View holds the peers'
// reports with their age and health plus the pending counts, and Poller
// keeps a View fed by fetching each peer's report every Interval.
package load

import "time"

// Health says how much a peer's report can be trusted.
type Health uint8

const (
	// Fresh: the report is younger than StaleAfter.
	Fresh Health = iota
	// Unknown: no report, or one older than StaleAfter; the router treats
	// the replica's load as unknown (it uses only its own counts).
	Unknown
	// Unhealthy: no report for longer than DownAfter; its replicas are not
	// candidates while any other is.
	Unhealthy
)

func (h Health) String() string {
	switch h {
	case Fresh:
		return "fresh"
	case Unknown:
		return "unknown"
	default:
		return "unhealthy"
	}
}

// Staleness bounds (the defaults of View).
const (
	// DefaultInterval is how often a node looks for a change in its own
	// load to push to its peers. A replica serves a request in a few
	// hundred milliseconds or less, and a node routing on a report
	// 100 ms old sent requests to replicas that other nodes had just
	// filled (issue 17: 1.13x the oracle's mean with requests entering
	// every node, 1.03-1.06x at 10-20 ms); past 4 peers the feed's
	// frame budget paces it anyway.
	DefaultInterval = 20 * time.Millisecond
	// DefaultPeersInterval is how often a Subscriber reads its peer list
	// and first waits to open a failed feed again: members come and go
	// far more rarely than loads change.
	DefaultPeersInterval = 100 * time.Millisecond
	// DefaultStaleAfter: a report older than this is Unknown. Peers push
	// a report when their load changes and at least every
	// DefaultKeepalive, so a report this old means one came late.
	DefaultStaleAfter = 2 * time.Second
	// DefaultDownAfter: a peer without a report for this long is Unhealthy.
	DefaultDownAfter = 3 * time.Second
)

// Model is one model's load on one node, as the node itself measures it.
type Model struct {
	// Running are the requests generating on the local Ollama now.
	Running int `json:"running"`
	// Queued are the requests waiting in sovra's admission queue.
	Queued int `json:"queued"`
	// Slots is how many generations the local Ollama runs at once.
	Slots int `json:"slots"`
	// TTFTMs is the moving average of the time from a request's start on
	// Ollama to its first token, in milliseconds (0: nothing measured).
	TTFTMs float64 `json:"ttft_ms,omitempty"`
	// TokensPerSec is the moving average of one stream's decode speed
	// (0: nothing measured).
	TokensPerSec float64 `json:"tokens_per_sec,omitempty"`
	// OutTokens is the moving average of completion tokens per request
	// (0: nothing measured).
	OutTokens float64 `json:"out_tokens,omitempty"`
	// PrefillMsPerKiB is what one more KiB of prompt that the replica's
	// cache does not hold adds to the time to first token, in
	// milliseconds (0: nothing measured).
	PrefillMsPerKiB float64 `json:"prefill_ms_per_kib,omitempty"`
	// PromptKiB is the moving average of the prompt per request that the
	// cache did not hold, in KiB: the prompt behind TTFTMs (0: nothing
	// measured).
	PromptKiB float64 `json:"prompt_kib,omitempty"`
	// ArrivalsPerSec is the recent rate of requests for the model that
	// reached the node's admission queue, from every node (0: none).
	ArrivalsPerSec float64 `json:"arrivals_per_sec,omitempty"`
}

// Report is what a node tells its peers of its load. Models are keyed by
// Ollama tag (normalized: "name:tag").
type Report struct {
	Node string `json:"node"`
	// Seq increases with every report a node produces.
	Seq    uint64           `json:"seq"`
	Models map[string]Model `json:"models"`
}

// Load is one replica's load as this node's router sees it.
type Load struct {
	Model
	// Pending are the requests this node sent to the replica that the
	// replica's last report cannot include yet (sent after it was made).
	Pending int
	// Outstanding are the requests this node sent to the replica that
	// have not finished, whatever the reports say.
	Outstanding int
	// Age is how old the report is (0 for this node's own load).
	Age time.Duration
	// Health is the report's health (Fresh for this node's own load).
	Health Health
}

// Busy is the number of requests the replica holds or is about to hold:
// running, queued and pending, and never fewer than this node's own
// outstanding requests there (a stale report may not show them).
func (l Load) Busy() int { return max(l.Running+l.Queued+l.Pending, l.Outstanding) }
