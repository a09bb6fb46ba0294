// Package scheduler owns placement: a snapshot of the desired state in, a
// plan out. Schedule decides, for every deployment, which nodes hold its
// replicas and how much memory each reserves on which GPUs; Explain says
// why each node was or was not chosen; Verify re-checks a plan against the
// state before the leader commits it.
//
// The scheduler is pure: it reads the snapshot and its Options (the time
// comes in there) and returns the same plan for the same inputs. Feasibility
// is a chain of small filters (node ready, label constraints, GPU model,
// one replica per node, VRAM as Ollama lays a model out over one node's
// GPUs) and preference a weighted sum of rankers (bin-pack, spread, model
// on disk, and low-carbon power as a tie-breaker), composed in one place. DESIGN.md gives the rules: what stays,
// what moves, who may evict whom.
//
// The package imports the standard library, cluster/state and models only.
package scheduler
