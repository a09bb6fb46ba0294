package state

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Type identifies a command in the log. Values are never renumbered or
// reused: logs written by older versions must replay the same way.
type Type byte

// Command types.
const (
	TypeNoop             Type = 0
	TypeRegisterNode     Type = 1
	TypeSetNodeStatus    Type = 2
	TypeRemoveNode       Type = 3
	TypePutDeployment    Type = 4
	TypeDeleteDeployment Type = 5
	TypeSetPlacements    Type = 6
	TypeReportPlacement  Type = 7
	TypeRegisterModel    Type = 8
	TypeUnregisterModel  Type = 9
	// TypeTouchDeployment and TypeSetDeploymentIdle are written with
	// FlagIgnorable: a node that does not know them only misses idleness.
	TypeTouchDeployment   Type = 10
	TypeSetDeploymentIdle Type = 11
	// TypeSetClusterCA records the cluster CA once, so that every member
	// can issue certificates to joining nodes.
	TypeSetClusterCA Type = 12
	// TypeSetNodeLabels sets a node's labels: an operator's word, never a
	// node's own.
	TypeSetNodeLabels Type = 13
	// API keys (keys.go). TypeTouchAPIKeys is written with
	// FlagIgnorable: a node that does not know it only misses last uses.
	TypePutAPIKey    Type = 14
	TypeUpdateAPIKey Type = 15
	TypeRotateAPIKey Type = 16
	TypeDeleteAPIKey Type = 17
	TypeTouchAPIKeys Type = 18
	// The audit log (audit.go).
	TypeAppendAudit Type = 19
	TypeTrimAudit   Type = 20
)

// Flags modify how a command is applied.
type Flags byte

// FlagIgnorable marks a command that a version which does not know its type
// may skip. A rolling upgrade can then write new commands before every node
// understands them, as long as skipping them is harmless.
const FlagIgnorable Flags = 1 << 0

// Command is one change to the state.
type Command struct {
	Type  Type
	Flags Flags
	// Key, when set, makes the command idempotent: a second command with
	// the same key is not applied again and returns the first one's result.
	Key  string
	Body any
	// Audit, when set, is recorded in the audit log by the same Apply,
	// with the command's outcome: an action and its record cannot
	// diverge.
	Audit *AuditRecord
}

// Bodies of the commands.
type (
	// RegisterNode adds a node or updates its addresses, labels, GPUs and
	// version. A new node starts ready.
	RegisterNode struct {
		Node Node  `json:"node"`
		Time int64 `json:"time"`
	}
	// SetNodeStatus changes a node's status.
	SetNodeStatus struct {
		ID     string     `json:"id"`
		Status NodeStatus `json:"status"`
		Reason string     `json:"reason,omitempty"`
		Time   int64      `json:"time"`
	}
	// SetClusterCA records the cluster CA (PEM certificate and key). It
	// cannot be replaced by another one.
	SetClusterCA struct {
		CA ClusterCA `json:"ca"`
	}
	// SetNodeLabels replaces a node's labels.
	SetNodeLabels struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
	}
	// RemoveNode removes a node and its placements.
	RemoveNode struct {
		ID string `json:"id"`
	}
	// PutDeployment creates or replaces a deployment. IfVersion, when not
	// zero, makes the write conditional on the current version.
	PutDeployment struct {
		Deployment Deployment `json:"deployment"`
		IfVersion  uint64     `json:"if_version,omitempty"`
		// Create fails the write when the deployment exists.
		Create bool `json:"create,omitempty"`
		// Time is the proposer's clock (Unix ms); a write counts as a use
		// of the deployment (LastUsed), so a new one does not go idle at
		// once.
		Time int64 `json:"time,omitempty"`
	}
	// DeleteDeployment removes a deployment and its placements.
	DeleteDeployment struct {
		Name string `json:"name"`
	}
	// SetPlacements replaces the placements of the deployments it names
	// (a scheduler plan). Placements kept on the same node keep their state.
	SetPlacements struct {
		Deployments map[string][]string `json:"deployments"` // deployment -> nodes
	}
	// ReportPlacement is a node's report on one of its replicas.
	ReportPlacement struct {
		Deployment string         `json:"deployment"`
		Node       string         `json:"node"`
		State      PlacementState `json:"state"`
		Reason     string         `json:"reason,omitempty"`
		Progress   float64        `json:"progress,omitempty"`
		BytesDone  int64          `json:"bytes_done,omitempty"`
		BytesTotal int64          `json:"bytes_total,omitempty"`
	}
	// RegisterModel adds a model to the cluster's registry, or replaces
	// its figures. The name is put in key form; figures that do not hold
	// together (models.Model.Validate) are refused.
	RegisterModel struct {
		Model ModelSpec `json:"model"`
		// Create fails the write when the model is registered already.
		Create bool `json:"create,omitempty"`
	}
	// UnregisterModel removes a model from the registry. Deployments of it
	// stay; the scheduler leaves them as they are until its figures are
	// known again.
	UnregisterModel struct {
		Name string `json:"name"`
	}
	// TouchDeployment records a use of a deployment: LastUsed becomes
	// the later of itself and Time. It does not wake an idle deployment.
	TouchDeployment struct {
		Name string `json:"name"`
		Time int64  `json:"time"` // proposer's clock, Unix ms
	}
	// SetDeploymentIdle marks a deployment idle (the scheduler then
	// removes its replicas) or wakes it. Waking counts as a use (LastUsed).
	// Marking one idle that has no IdleTimeout, or that was used after
	// UnusedSince, changes nothing and answers "conflict": a request
	// recorded meanwhile wins over the leader's stale view.
	SetDeploymentIdle struct {
		Name string `json:"name"`
		Idle bool   `json:"idle"`
		Time int64  `json:"time"` // proposer's clock, Unix ms
		// UnusedSince, when marking idle, is the LastUsed the proposer
		// saw; a later use makes the command fail.
		UnusedSince int64 `json:"unused_since,omitempty"`
		// UnusedSinceIndex, when marking idle, is the UsedIndex the
		// proposer saw; a use recorded after it makes the command fail,
		// whatever the clock of the node that recorded it. Versions below
		// LevelIdleByIndex ignore it, so the leader sends it only when
		// every member is at that level (or they would diverge).
		UnusedSinceIndex uint64 `json:"unused_since_index,omitempty"`
	}
)

// envelope is the encoded form after the type and flag bytes.
type envelope struct {
	Key   string          `json:"k,omitempty"`
	Body  json.RawMessage `json:"b,omitempty"`
	Audit *AuditRecord    `json:"a,omitempty"`
}

// Encode turns a command into a log entry: a type byte, a flags byte and a
// JSON envelope.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c.Body)
	if err != nil {
		return nil, fmt.Errorf("encode %v: %w", c.Type, err)
	}
	env, err := json.Marshal(envelope{Key: c.Key, Body: body, Audit: c.Audit})
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(c.Type), byte(c.Flags)}, env...), nil
}

// ErrCorrupt reports a log entry that cannot be decoded.
var ErrCorrupt = errors.New("corrupt command")

// decoded is a log entry taken apart.
type decoded struct {
	typ   Type
	flags Flags
	key   string
	body  json.RawMessage
	audit *AuditRecord
}

func decode(b []byte) (decoded, error) {
	if len(b) < 2 {
		return decoded{}, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	var env envelope
	if err := json.Unmarshal(b[2:], &env); err != nil {
		return decoded{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return decoded{typ: Type(b[0]), flags: Flags(b[1]), key: env.Key, body: env.Body, audit: env.Audit}, nil
}

func (t Type) String() string {
	switch t {
	case TypeNoop:
		return "noop"
	case TypeRegisterNode:
		return "register-node"
	case TypeSetClusterCA:
		return "set-cluster-ca"
	case TypeSetNodeLabels:
		return "set-node-labels"
	case TypeSetNodeStatus:
		return "set-node-status"
	case TypeRemoveNode:
		return "remove-node"
	case TypePutDeployment:
		return "put-deployment"
	case TypeDeleteDeployment:
		return "delete-deployment"
	case TypeSetPlacements:
		return "set-placements"
	case TypeReportPlacement:
		return "report-placement"
	case TypeRegisterModel:
		return "register-model"
	case TypeUnregisterModel:
		return "unregister-model"
	case TypeTouchDeployment:
		return "touch-deployment"
	case TypeSetDeploymentIdle:
		return "set-deployment-idle"
	case TypePutAPIKey:
		return "put-api-key"
	case TypeUpdateAPIKey:
		return "update-api-key"
	case TypeRotateAPIKey:
		return "rotate-api-key"
	case TypeDeleteAPIKey:
		return "delete-api-key"
	case TypeTouchAPIKeys:
		return "touch-api-keys"
	case TypeAppendAudit:
		return "append-audit"
	case TypeTrimAudit:
		return "trim-audit"
	case TypeRecordUsage:
		return "record-usage"
	case TypeRollupUsage:
		return "rollup-usage"
	case TypeRecordEnergy:
		return "record-energy"
	}
	return fmt.Sprintf("type-%d", byte(t))
}
