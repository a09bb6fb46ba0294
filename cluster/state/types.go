// Package state is sovra's replicated desired state: the types every node
// agrees on through raft, the commands that change them, a deterministic
// Apply, and snapshot encoding. It imports no raft: cluster adapts it to a
// raft FSM.
//
// Rules that keep replicas identical: Apply reads nothing but the state and
// the command (times come inside commands, never from the clock), iterates
// maps only in sorted order when the order matters, and returns business
// errors as results instead of failing.
package state

// NodeStatus is the health of a node as the cluster sees it.
type NodeStatus string

// Node statuses.
const (
	NodeReady    NodeStatus = "ready"
	NodeDown     NodeStatus = "down"
	NodeCordoned NodeStatus = "cordoned"
	NodeDraining NodeStatus = "draining"
)

// GPU is one accelerator of a node.
type GPU struct {
	Index       int    `json:"index"`
	Model       string `json:"model"` // as nvidia-smi names it, e.g. "NVIDIA H800"
	MemoryBytes uint64 `json:"memory_bytes"`
	UUID        string `json:"uuid,omitempty"`
}

// Node is a member of the cluster.
type Node struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	// Labels are what the scheduler places by. The cluster lets only
	// operators set them (SetNodeLabels); what a node says of itself (its
	// --label flags) is kept in DeclaredLabels, shown, trusted by nobody.
	Labels         map[string]string `json:"labels,omitempty"`
	DeclaredLabels map[string]string `json:"declared_labels,omitempty"`
	GPUs           []GPU             `json:"gpus,omitempty"`
	Status         NodeStatus        `json:"status"`
	Version        string            `json:"version,omitempty"`
	// CommandLevel is the highest command type the node's build applies
	// (see Level); 0 from a version before levels (LegacyLevel).
	CommandLevel Type `json:"command_level,omitempty"`
	// StatusReason says why the status last changed.
	StatusReason string `json:"status_reason,omitempty"`
	// StatusSince is the proposer's clock (Unix ms) when the status changed.
	StatusSince int64  `json:"status_since,omitempty"`
	JoinedIndex uint64 `json:"joined_index"`
	// Models are the models the node's Ollama holds on disk, by the names
	// it lists them under. The scheduler prefers such a node, which saves
	// a pull.
	Models []string `json:"models,omitempty"`
}

// Deployment is a model the operators want served.
type Deployment struct {
	Name        string   `json:"name"`
	Model       string   `json:"model"` // Ollama tag
	Replicas    int      `json:"replicas"`
	Constraints []string `json:"constraints,omitempty"` // label expressions, e.g. "jurisdiction=EU"
	Priority    int      `json:"priority,omitempty"`
	// SpreadBy, when set, is a node label key (e.g. "zone") whose values
	// the scheduler spreads the replicas over.
	SpreadBy string `json:"spread_by,omitempty"`
	// IdleTimeout, in seconds, lets the deployment go idle: when no request
	// used it for that long, the leader marks it Idle and the scheduler
	// removes its replicas; the next request wakes it. Zero: never idle.
	IdleTimeout int64 `json:"idle_timeout,omitempty"`
	// Idle is set while the deployment wants no replicas for lack of use.
	// Writes of the deployment keep it; TouchDeployment does not clear it,
	// SetDeploymentIdle does.
	Idle bool `json:"idle,omitempty"`
	// LastUsed is the proposer's clock (Unix ms) of the last recorded use:
	// a request, a wake, or a write of the deployment.
	LastUsed int64 `json:"last_used,omitempty"`
	// UsedIndex is the log index of the last recorded use. The leader
	// times idleness from when it saw this change, on its own clock, so a
	// node whose clock is off cannot make a busy deployment look unused.
	UsedIndex uint64 `json:"used_index,omitempty"`
	// Version counts changes; a write may be conditioned on it.
	Version       uint64 `json:"version"`
	CreatedIndex  uint64 `json:"created_index"`
	ModifiedIndex uint64 `json:"modified_index"`
}

// PlacementState is where a replica stands on its node.
type PlacementState string

// Placement states.
const (
	PlacementPending PlacementState = "pending"
	PlacementPulling PlacementState = "pulling"
	PlacementLoading PlacementState = "loading"
	PlacementReady   PlacementState = "ready"
	PlacementFailed  PlacementState = "failed"
)

// Placement is one replica of a deployment assigned to a node.
type Placement struct {
	Deployment string         `json:"deployment"`
	Node       string         `json:"node"`
	State      PlacementState `json:"state"`
	Reason     string         `json:"reason,omitempty"`
	Progress   float64        `json:"progress,omitempty"` // 0..1 while pulling
	// BytesDone and BytesTotal count a pull's bytes over the blobs
	// announced so far.
	BytesDone     int64  `json:"bytes_done,omitempty"`
	BytesTotal    int64  `json:"bytes_total,omitempty"`
	ModifiedIndex uint64 `json:"modified_index"`
}

// placementKey is the map key of a placement.
func placementKey(deployment, node string) string { return deployment + "\x00" + node }

// Quota holds its place in the state (its json name is in snapshots);
// keys' limits are APIKey.Limits, enforced by the nodes (node/quota).
type Quota struct {
	Key             string `json:"key"`
	TokensPerMinute int64  `json:"tokens_per_minute"`
}

// UsageTotal counts what one key used of one model on one node in one
// hour (Hours 1) or, once rolled up, on all nodes in one UTC day (Hours
// 24, Node empty). State.Usage files it under UsageKey.
type UsageTotal struct {
	Start            int64  `json:"start"` // Unix seconds
	Hours            int64  `json:"hours"`
	Key              string `json:"key"`
	Model            string `json:"model"`
	Node             string `json:"node,omitempty"`
	Requests         int64  `json:"requests"`
	Errors           int64  `json:"errors,omitempty"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	// TTFTMs is the sum of TTFTCount times to first token (streamed
	// answers), in milliseconds.
	TTFTMs    int64 `json:"ttft_ms,omitempty"`
	TTFTCount int64 `json:"ttft_count,omitempty"`
}
