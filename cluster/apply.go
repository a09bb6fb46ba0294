package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/version"
)

// enqueueTimeout bounds handing an entry to raft; past it nothing was
// queued and the write is retried.
const enqueueTimeout = 2 * time.Second

type applyRequest struct {
	Entry []byte `json:"entry"` // state.Encode output
}

// Apply commits a command through the leader, from any node, and returns
// its outcome. err is the outcome's business error when the command was
// applied but refused (errors.Is(err, state.ErrConflict) and so on), or
// ErrIndeterminate when the command may or may not have been applied, or
// the reason nothing was applied (ErrNoLeader when the context ran out
// without a leader; ErrStorage at once while this node cannot write its
// data directory). A command with an idempotency key (cmd.Key) is retried
// across leader changes even when an attempt's outcome was lost; the state
// machine applies a key once.
func (c *Cluster) Apply(ctx context.Context, cmd state.Command) (state.Outcome, error) {
	entry, err := state.Encode(cmd)
	if err != nil {
		return state.Outcome{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	out, err := c.applyEntry(ctx, entry, cmd.Key != "")
	if err != nil {
		return out, err
	}
	return out, out.Err()
}

func (c *Cluster) applyEntry(ctx context.Context, entry []byte, keyed bool) (state.Outcome, error) {
	if err := c.validEntry(entry); err != nil {
		return state.Outcome{}, err
	}
	var out state.Outcome
	err := c.onLeader(ctx, leaderOp{
		route: "apply", in: applyRequest{Entry: entry}, out: &out, idempotent: keyed, abort: c.disk.stalled,
		local: func(ctx context.Context) (err error) {
			out, err = c.applyLocal(ctx, entry)
			return err
		},
	})
	return out, err
}

// applyLocal commits an entry on this node, which must lead. Once raft has
// the entry, only its result or ErrIndeterminate comes back.
func (c *Cluster) applyLocal(ctx context.Context, entry []byte) (state.Outcome, error) {
	if err := c.validEntry(entry); err != nil {
		return state.Outcome{}, err
	}
	if !c.IsLeader() {
		return state.Outcome{}, ErrNotLeader
	}
	if err := c.gate(entry); err != nil {
		return state.Outcome{}, err
	}
	if state.Type(entry[0]) == state.TypeSetNodeLabels {
		c.nodeRecords.Lock() // see register
		defer c.nodeRecords.Unlock()
	}
	if err := live(ctx); err != nil {
		return state.Outcome{}, err
	}
	f := c.raft.Apply(entry, enqueueWithin(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return state.Outcome{}, err
	}
	out, ok := f.Response().(state.Outcome)
	if !ok {
		return state.Outcome{}, fmt.Errorf("cluster: unexpected apply response %T", f.Response())
	}
	return out, nil
}

// waitFuture waits for a raft future. If the context ends first, the work
// is in raft's hands and its outcome is unknown. The waiting goroutine
// ends when raft answers; a future raft drops at shutdown leaves it parked
// until the process exits.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return raftErr(err)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err())
	}
}

// live refuses work whose caller has gone or whose deadline has passed,
// before anything reaches raft: the leader proposes nothing for a caller
// that gave up, however late a forwarded request arrives.
func live(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrExpired, err)
	}
	return nil
}

func enqueueWithin(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(min(time.Until(dl), enqueueTimeout), time.Millisecond)
	}
	return enqueueTimeout
}

// validEntry checks that an entry decodes before it enters the log: the
// state machine panics on a malformed entry, on every node, by design.
// It runs the real decoder on a scratch state. A type this node does not
// know is ErrUpgradeRequired: a newer node proposed it.
func (c *Cluster) validEntry(entry []byte) (err error) {
	defer func() {
		r := recover()
		if u, ok := r.(*state.UnknownTypeError); ok {
			err = fmt.Errorf("%w: node %s runs sovra %s, which does not know command type %d: upgrade it",
				ErrUpgradeRequired, c.cfg.NodeID, version.Version, byte(u.Type))
		} else if r != nil {
			err = fmt.Errorf("%w: command does not decode: %v", ErrInvalid, r)
		}
	}()
	state.New().Apply(1, entry)
	return nil
}

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// Read calls fn with the state. By default the read is linearizable: it
// sees every write acknowledged before Read was called. The leader confirms
// its leadership and names the state index to read at; this node waits
// until it has applied that index. stale=true reads the local state at
// once. fn must not keep the state.
func (c *Cluster) Read(ctx context.Context, stale bool, fn func(*state.State)) error {
	if !stale {
		// A node that cannot write cannot catch up, and its raft may
		// wait for the disk: both waits give up when its disk fails.
		idx, err := c.readIndex(ctx)
		if err != nil {
			return err
		}
		if err := c.waitApplied(ctx, idx); err != nil {
			return err
		}
	}
	c.machine.Read(fn)
	return nil
}

func (c *Cluster) readIndex(ctx context.Context) (uint64, error) {
	var resp readIndexResponse
	err := c.onLeader(ctx, leaderOp{
		route: "read-index", in: struct{}{}, out: &resp, idempotent: true, readOnly: true, abort: c.disk.stalled,
		local: func(ctx context.Context) (err error) {
			resp.Index, err = c.readIndexLocal(ctx)
			return err
		},
	})
	return resp.Index, err
}

// readIndexLocal returns the state index a linearizable read must see. The
// leader's commit index counts only once it has committed an entry of its
// own term (a barrier, once per term); then leadership is confirmed with a
// heartbeat round, and the state must have applied the commit index. When
// the last committed entry is one the state machine never sees (a barrier
// or no-op), a barrier stands in.
func (c *Cluster) readIndexLocal(ctx context.Context) (uint64, error) {
	if !c.IsLeader() {
		return 0, ErrNotLeader
	}
	term := c.raft.CurrentTerm()
	if c.readyTerm.Load() != term {
		return c.barrier(ctx, term)
	}
	commit := c.raft.CommitIndex()
	if err := waitFuture(ctx, c.raft.VerifyLeader()); err != nil {
		return 0, err
	}
	if c.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed", errRetry)
	}
	if c.fsm.seen.Load() >= commit {
		return c.machine.Index(), nil
	}
	return c.barrier(ctx, term)
}

// barrier commits a barrier entry: once it returns, this node led when it
// committed and its state machine has applied everything before it.
func (c *Cluster) barrier(ctx context.Context, term uint64) (uint64, error) {
	if err := waitFuture(ctx, c.raft.Barrier(enqueueWithin(ctx))); err != nil {
		return 0, err
	}
	if c.raft.CurrentTerm() == term {
		c.readyTerm.Store(term)
	}
	return c.machine.Index(), nil
}

// waitApplied waits until the local state has applied index.
// It gives up at once when the disk stops the node from catching up.
func (c *Cluster) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch, sick := c.machine.Changed(), c.disk.changed()
		if c.machine.Index() >= index {
			return nil
		}
		if err := c.disk.stalled(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for index %d (at %d): %w", index, c.machine.Index(), ctx.Err())
		case <-ch:
		case <-sick:
		}
	}
}

// commitLocal encodes cmd and commits it on this node, which must lead;
// a business error comes back as the error.
func (c *Cluster) commitLocal(ctx context.Context, cmd state.Command) error {
	entry, err := state.Encode(cmd)
	if err != nil {
		return err
	}
	out, err := c.applyLocal(ctx, entry)
	if err != nil {
		return err
	}
	return out.Err()
}
