// Package cluster will own the raft wiring: open, bootstrap, join, apply,
// forwarding to the leader and snapshots. It is empty until the cluster work
// lands; cluster/state will hold the replicated types.
package cluster
