package client

import "time"

// This file holds the wire types of the cluster, node and routing routes.
// Their JSON names are the server's; times are Unix milliseconds unless
// said otherwise.

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	// Status is the node's status as the answering node can tell (ready,
	// down, joining, unknown, ...); StateStatus the replicated state's,
	// when it differs.
	Status      string `json:"status"`
	StateStatus string `json:"state_status,omitempty"`
}

// ClusterStatus is a node's view of the cluster (GET /admin/v1/cluster).
type ClusterStatus struct {
	Self         string   `json:"self"`
	Leader       string   `json:"leader"`
	Term         uint64   `json:"term"`
	AppliedIndex uint64   `json:"applied_index"`
	Members      []Member `json:"members"`
	// While there is no leader: the last one seen, since when there is
	// none, and when the node last heard from a leader.
	LastLeader    string     `json:"last_leader,omitempty"`
	NoLeaderSince *time.Time `json:"no_leader_since,omitempty"`
	LastContact   *time.Time `json:"last_contact,omitempty"`
	Warning       string     `json:"warning,omitempty"`
}

// GPU is one accelerator of a node.
type GPU struct {
	Index       int    `json:"index"`
	Model       string `json:"model"`
	MemoryBytes uint64 `json:"memory_bytes"`
	UUID        string `json:"uuid,omitempty"`
}

// Node statuses.
const (
	NodeReady    = "ready"
	NodeDown     = "down"
	NodeCordoned = "cordoned"
	NodeDraining = "draining"
)

// Node is a member of the cluster as the state holds it.
type Node struct {
	ID             string            `json:"id"`
	HTTPAddr       string            `json:"http_addr"`
	RaftAddr       string            `json:"raft_addr"`
	Labels         map[string]string `json:"labels,omitempty"`
	DeclaredLabels map[string]string `json:"declared_labels,omitempty"`
	GPUs           []GPU             `json:"gpus,omitempty"`
	Status         string            `json:"status"`
	Version        string            `json:"version,omitempty"`
	// CommandLevel is the newest kind of state change the node's build
	// applies (0 from versions before it was reported); a change that
	// older versions may not skip waits until every member reaches it.
	CommandLevel int      `json:"command_level,omitempty"`
	StatusReason string   `json:"status_reason,omitempty"`
	StatusSince  int64    `json:"status_since,omitempty"`
	JoinedIndex  uint64   `json:"joined_index"`
	Models       []string `json:"models,omitempty"`
}

// NodeView is a node as GET /admin/v1/nodes/{id} shows it: with, while
// it drains, how far the drain has come.
type NodeView struct {
	Node
	Drain *DrainReport `json:"drain,omitempty"`
}

// DrainReport says when a draining node may be stopped: Complete once it
// holds no replica.
type DrainReport struct {
	Complete  bool             `json:"complete"`
	Remaining []DrainRemaining `json:"remaining"`
	Blocked   []DrainBlocked   `json:"blocked"`
}

// DrainRemaining is a replica still on a draining node.
type DrainRemaining struct {
	Deployment string `json:"deployment"`
	State      string `json:"state"`
	Waiting    string `json:"waiting"`
}

// DrainBlocked is a replica that cannot leave a draining node, and why.
type DrainBlocked struct {
	Deployment string `json:"deployment"`
	Reason     string `json:"reason"`
}

// JoinRequest is the body of POST /admin/v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	Node     Node   `json:"node"`
}

// ReplicaView is a ready replica as a node routes by it.
type ReplicaView struct {
	Deployment   string  `json:"deployment"`
	Model        string  `json:"model"`
	Node         string  `json:"node"`
	Local        bool    `json:"local"`
	Health       string  `json:"health"`
	ReportAgeMs  float64 `json:"report_age_ms"`
	Running      int     `json:"running"`
	Queued       int     `json:"queued"`
	Pending      int     `json:"pending"`
	Outstanding  int     `json:"outstanding"`
	Slots        int     `json:"slots"`
	TTFTMs       float64 `json:"ttft_ms"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	OutTokens    float64 `json:"out_tokens"`
	// PrefillMsPerKiB and PromptKiB are the measured cost of an uncached
	// KiB of prompt and the average uncached prompt; ArrivalsPerSec the
	// replica's rate of requests, as its node reported them.
	PrefillMsPerKiB float64 `json:"prefill_ms_per_kib"`
	PromptKiB       float64 `json:"prompt_kib"`
	ArrivalsPerSec  float64 `json:"arrivals_per_sec"`
	Breaker         string  `json:"breaker"`
}

// RoutingView is GET /admin/v1/routing: the node's routing policy and
// every ready replica it routes to.
type RoutingView struct {
	Policy   string        `json:"policy"`
	Replicas []ReplicaView `json:"replicas"`
}
