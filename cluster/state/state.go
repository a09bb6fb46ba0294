package state

import (
	"sort"
)

// State is the whole replicated state. Only Apply and Restore change it.
type State struct {
	// Index is the log index of the last applied command.
	Index       uint64                 `json:"index"`
	Nodes       map[string]*Node       `json:"nodes"`
	Deployments map[string]*Deployment `json:"deployments"`
	Placements  map[string]*Placement  `json:"placements"`
	APIKeys     map[string]*APIKey     `json:"api_keys"`
	Quotas      map[string]*Quota      `json:"quotas"`
	Usage       map[string]*UsageTotal `json:"usage"`
	// UsageBatches is the last usage batch applied per node (a retried
	// batch at or below it is not counted again).
	UsageBatches map[string]uint64 `json:"usage_batches,omitempty"`
	// Energy holds the energy buckets (EnergyTotal) by EnergyKey, and
	// EnergyBatches the last energy batch applied per node (energy.go).
	Energy        map[string]*EnergyTotal `json:"energy,omitempty"`
	EnergyBatches map[string]uint64       `json:"energy_batches,omitempty"`

	Audit []AuditEntry `json:"audit"`
	// AuditAnchor stands for the entries trimmed from the head of Audit.
	AuditAnchor AuditAnchor `json:"audit_anchor"`
	// KeysIndex is the index of the last change to the set of keys or
	// their secrets, fields or roles (not their last use): key lookups
	// rebuild their index when it moves.
	KeysIndex uint64 `json:"keys_index,omitempty"`
	// Models are the models operators (or nodes, from their Ollama)
	// registered beyond the built-in catalog, by the key form of their
	// names (see ModelSpec.Name).
	Models map[string]*ModelSpec `json:"models,omitempty"`
	// Idem remembers the results of idempotent commands by key, oldest
	// first in IdemOrder, bounded by MaxIdempotencyKeys.
	Idem      map[string]Outcome `json:"idem"`
	IdemOrder []string           `json:"idem_order"`
	// Rejected are the last entries that could not be applied (see
	// ApplyOrReject), oldest first; RejectedTotal counts all of them.
	Rejected []Rejection `json:"rejected,omitempty"`
	// ClusterCA signs the certificates of joining nodes; set once. It
	// is a secret: never show it outside the state and its snapshots.
	ClusterCA     *ClusterCA `json:"cluster_ca,omitempty"`
	RejectedTotal uint64     `json:"rejected_total,omitempty"`
	// CommandLevel is the highest type of a command applied that older
	// versions may not skip: a version whose level (Level) is below it
	// cannot hold this state and refuses its snapshots.
	CommandLevel Type `json:"command_level,omitempty"`
}

// ClusterCA is the cluster CA in PEM.
type ClusterCA struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// MaxIdempotencyKeys bounds how many idempotency keys the state remembers.
// A retry arriving after this many newer idempotent writes is applied again.
const MaxIdempotencyKeys = 10000

// New returns an empty state.
func New() *State {
	return &State{
		Nodes:       map[string]*Node{},
		Deployments: map[string]*Deployment{},
		Placements:  map[string]*Placement{},
		APIKeys:     map[string]*APIKey{},
		Quotas:      map[string]*Quota{},
		Usage:       map[string]*UsageTotal{},
		Models:      map[string]*ModelSpec{},
		Idem:        map[string]Outcome{},
	}
}

// NodeList returns the nodes sorted by id.
func (s *State) NodeList() []*Node {
	out := make([]*Node, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// DeploymentList returns the deployments sorted by name.
func (s *State) DeploymentList() []*Deployment {
	out := make([]*Deployment, 0, len(s.Deployments))
	for _, d := range s.Deployments {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PlacementsOf returns a deployment's placements sorted by node.
func (s *State) PlacementsOf(deployment string) []*Placement {
	var out []*Placement
	for _, p := range s.Placements {
		if p.Deployment == deployment {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Placement returns one placement, or nil.
func (s *State) Placement(deployment, node string) *Placement {
	return s.Placements[placementKey(deployment, node)]
}
