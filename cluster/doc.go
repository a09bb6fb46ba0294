// Package cluster is sovra's raft wiring. It owns opening the durable raft
// stores, bootstrapping (single node or bootstrap-expect), joining, removing
// and leaving, applying commands and reading linearizably from any node (the
// one forwarding-to-the-leader path lives in forward.go), node liveness,
// voter promotion and the scheduler run by the leader (schedule.go: plan,
// verify, commit placements), and operator snapshots.
//
// The replicated state itself lives in cluster/state; the FSM here is a thin
// adapter over state.Machine. Raft holds desired state only: the inference
// path reads Machine() locally and never waits on raft.
//
// See DESIGN.md in this directory for timings, forwarding, liveness,
// promotion and how writes of unknown outcome are reported.
package cluster
