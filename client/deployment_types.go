package client

// This file holds the wire types of the deployment and catalog routes.

// DeploymentRequest is the body of POST /admin/v1/deployments.
type DeploymentRequest struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	// Replicas defaults to 1 when nil.
	Replicas    *int     `json:"replicas,omitempty"`
	Constraints []string `json:"constraints,omitempty"`
	Priority    int      `json:"priority,omitempty"`
	SpreadBy    string   `json:"spread_by,omitempty"`
	// IdleTimeout lets the deployment go idle when unused that long: a
	// duration ("10m"); empty: never.
	IdleTimeout string `json:"idle_timeout,omitempty"`
}

// Deployment statuses.
const (
	StatusOK          = "ok"
	StatusPartial     = "partial"
	StatusUnplaceable = "unplaceable"
	StatusInvalid     = "invalid"
	StatusIdle        = "idle"
	StatusDegraded    = "degraded"
	StatusUnavailable = "unavailable"
)

// Deployment is a deployment with its placements and the scheduler's
// verdict over it.
type Deployment struct {
	Name        string   `json:"name"`
	Model       string   `json:"model"`
	Replicas    int      `json:"replicas"`
	Constraints []string `json:"constraints,omitempty"`
	Priority    int      `json:"priority,omitempty"`
	SpreadBy    string   `json:"spread_by,omitempty"`
	// IdleTimeout in seconds; 0: never idle.
	IdleTimeout   int64  `json:"idle_timeout,omitempty"`
	Version       uint64 `json:"version"`
	CreatedIndex  uint64 `json:"created_index"`
	ModifiedIndex uint64 `json:"modified_index"`
	// Status and Reason are the scheduler's verdict (ok, partial,
	// unplaceable, invalid, idle, degraded, unavailable) and why.
	Status        string      `json:"status,omitempty"`
	Reason        string      `json:"reason,omitempty"`
	ReadyReplicas int         `json:"ready_replicas"`
	Settled       bool        `json:"settled"`
	Placements    []Placement `json:"placements"`
	Idle          bool        `json:"idle"`
	LastUsed      int64       `json:"last_used"`
	// UsedIndex is the log index of the last recorded use; the leader
	// times idleness from when it saw it change.
	UsedIndex uint64 `json:"used_index,omitempty"`
}

// Placement states.
const (
	PlacementPending = "pending"
	PlacementPulling = "pulling"
	PlacementLoading = "loading"
	PlacementReady   = "ready"
	PlacementFailed  = "failed"
)

// Placement is one replica of a deployment.
type Placement struct {
	Node  string `json:"node"`
	State string `json:"state"`
	// Reported is the state the node last reported, when State is unknown
	// because the node is down.
	Reported        string   `json:"reported_state,omitempty"`
	Ready           bool     `json:"ready"`
	Reason          string   `json:"reason,omitempty"`
	Progress        string   `json:"progress,omitempty"`
	ProgressPercent *float64 `json:"progress_percent,omitempty"`
	BytesDone       int64    `json:"bytes_done,omitempty"`
	BytesTotal      int64    `json:"bytes_total,omitempty"`
	// Action is keep, drain or remove.
	Action string `json:"action,omitempty"`
}

// Explanation is what the scheduler made of every node for a deployment.
type Explanation struct {
	Deployment  string            `json:"deployment"`
	Model       string            `json:"model,omitempty"`
	Constraints string            `json:"constraints,omitempty"`
	Need        uint64            `json:"need,omitempty"`
	Status      string            `json:"status,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Nodes       []NodeExplanation `json:"nodes,omitempty"`
	// Text is the terminal rendering.
	Text string `json:"text"`
}

// NodeExplanation is the verdict on one node: rejected, feasible, placed
// or holds.
type NodeExplanation struct {
	Node    string           `json:"node"`
	Verdict string           `json:"verdict"`
	Filter  string           `json:"filter,omitempty"`
	Reason  string           `json:"reason,omitempty"`
	Score   float64          `json:"score,omitempty"`
	Scores  []Score          `json:"scores,omitempty"`
	GPUs    []GPUReservation `json:"gpus,omitempty"`
	Free    uint64           `json:"free"`
}

// Score is one ranker's score of a node.
type Score struct {
	Ranker string  `json:"ranker"`
	Weight float64 `json:"weight"`
	Value  float64 `json:"value"`
}

// GPUReservation is the memory a replica reserves on one GPU.
type GPUReservation struct {
	Index int    `json:"index"`
	Bytes uint64 `json:"bytes"`
}

// ModelSpec is the figures the scheduler sizes a model's replicas by.
type ModelSpec struct {
	Name             string `json:"name"`
	Family           string `json:"family,omitempty"`
	Architecture     string `json:"architecture"`
	BaseModel        string `json:"base_model,omitempty"`
	Parameters       uint64 `json:"parameters"`
	ActiveParameters uint64 `json:"active_parameters,omitempty"`
	Experts          int    `json:"experts,omitempty"`
	ExpertsUsed      int    `json:"experts_used,omitempty"`
	Quantization     string `json:"quantization,omitempty"`
	FileSize         uint64 `json:"file_size,omitempty"`
	Layers           int    `json:"layers"`
	Embedding        int    `json:"embedding"`
	Heads            int    `json:"heads"`
	KVHeads          int    `json:"kv_heads"`
	HeadDimK         int    `json:"head_dim_k"`
	HeadDimV         int    `json:"head_dim_v"`
	KVLatentDim      int    `json:"kv_latent_dim,omitempty"`
	Vocab            int    `json:"vocab,omitempty"`
	TiedEmbeddings   bool   `json:"tied_embeddings,omitempty"`
	ContextLength    int    `json:"context_length"`
	License          string `json:"license,omitempty"`
	Source           string `json:"source,omitempty"`
	CreatedIndex     uint64 `json:"created_index"`
	ModifiedIndex    uint64 `json:"modified_index"`
}

// CatalogEntry is one model of the catalog: built in or registered.
type CatalogEntry struct {
	ModelSpec
	Aliases []string `json:"aliases,omitempty"`
	Builtin bool     `json:"builtin"`
	// Context and MemoryBytes are the context replicas are sized for and
	// the memory a replica needs at it.
	Context     int    `json:"context"`
	MemoryBytes uint64 `json:"memory_bytes"`
}

// modelRequest is the body of POST /admin/v1/catalog.
type modelRequest struct {
	ModelSpec
	Replace bool `json:"replace,omitempty"`
}

// Rank orders deployments for people, troubled ones first: 0 for one that
// cannot run as asked (unplaceable, invalid, unavailable), 1 partly
// placed or degraded, 3 ok, 4 idle.
func (d Deployment) Rank() int {
	switch d.Status {
	case StatusOK:
		return 3
	case StatusIdle:
		return 4
	case StatusPartial, StatusDegraded:
		return 1
	}
	return 0
}
