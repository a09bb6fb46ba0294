package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// SaveSnapshot writes the whole desired state, as of a linearizable read,
// in the cluster/state snapshot format.
func (c *Cluster) SaveSnapshot(ctx context.Context, w io.Writer) error {
	var s *state.State
	if err := c.Read(ctx, false, func(st *state.State) { s = st.Clone() }); err != nil {
		return err
	}
	return s.Encode(w)
}

type restoreRequest struct {
	Data  []byte `json:"data"`
	Force bool   `json:"force"`
}

// RestoreSnapshot replaces the whole desired state with a snapshot written
// by SaveSnapshot, on every node. It is refused with ErrRestoreNotForced
// unless force. Raft membership is not part of the state and stays as is.
// The restore is not retried when its outcome is lost (ErrIndeterminate).
func (c *Cluster) RestoreSnapshot(ctx context.Context, r io.Reader, force bool) error {
	if !force {
		return ErrRestoreNotForced
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return fmt.Errorf("cluster: read snapshot: %w", err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("%w: snapshot larger than %d bytes", ErrInvalid, maxBody)
	}
	return c.restoreBytes(ctx, data)
}

func (c *Cluster) restoreBytes(ctx context.Context, data []byte) error {
	if _, err := state.Decode(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c.onLeader(ctx, leaderOp{
		route: "restore", in: restoreRequest{Data: data, Force: true},
		local: func(ctx context.Context) error { return c.restoreLocal(ctx, data) },
	})
}

// restoreLocal has raft install the snapshot on the leader (followers get
// it by snapshot install), then commits a no-op command so the state index
// moves past every index a follower saw before the restore.
func (c *Cluster) restoreLocal(ctx context.Context, data []byte) error {
	s, err := state.Decode(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !c.IsLeader() {
		return ErrNotLeader
	}
	if s.CommandLevel > state.LegacyLevel {
		// Members that cannot read it would stop at its install.
		if err := c.requireLevel(s.CommandLevel, "restoring this snapshot"); err != nil {
			return err
		}
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(data))}
	done := make(chan error, 1)
	go func() { done <- c.raft.Restore(meta, bytes.NewReader(data), enqueueWithin(ctx)) }()
	select {
	case err := <-done:
		if err != nil {
			return raftErr(err)
		}
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err())
	}
	c.log.Warn("state replaced from a snapshot", zap.Int("bytes", len(data)))
	entry, err := state.Encode(state.Command{Type: state.TypeNoop})
	if err != nil {
		return err
	}
	_, err = c.applyLocal(ctx, entry)
	return err
}
