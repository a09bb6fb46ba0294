package main

import (
	"github.com/spf13/pflag"
)

// registerRaftTuning adds hidden flags that tune raft's snapshots and log
// files (zero keeps the defaults in cluster.RaftTimings). They are for
// tests that need snapshots and log rotations to happen within seconds,
// and for experts; every node should get the same values.
func (s *settings) registerRaftTuning(fs *pflag.FlagSet) {
	r := &s.node.Cluster.Raft
	fs.Uint64Var(&r.SnapshotThreshold, "raft-snapshot-threshold", 0, "raft log entries since the last snapshot before one is taken (0: 8192)")
	fs.DurationVar(&r.SnapshotInterval, "raft-snapshot-interval", 0, "how often raft checks whether to take a snapshot (0: 120s)")
	fs.Uint64Var(&r.TrailingLogs, "raft-trailing-logs", 0, "raft log entries kept after a snapshot for followers that lag (0: 10240)")
	fs.IntVar(&r.LogSegmentSize, "raft-segment-size", 0, "bytes of each raft log file, preallocated (0: 64 MiB)")
	for _, name := range []string{"raft-snapshot-threshold", "raft-snapshot-interval", "raft-trailing-logs", "raft-segment-size"} {
		_ = fs.MarkHidden(name)
	}
}
