package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// JoinRequest asks the leader to add a node to the cluster.
type JoinRequest struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	// Node holds the labels, GPUs and version to register; its id and
	// addresses are taken from the fields above.
	Node state.Node `json:"node"`
}

func (r JoinRequest) node() state.Node {
	n := r.Node
	n.ID, n.HTTPAddr, n.RaftAddr = r.ID, r.HTTPAddr, r.RaftAddr
	return n
}

func (r JoinRequest) validate() error {
	if r.ID == "" || r.HTTPAddr == "" || r.RaftAddr == "" {
		return fmt.Errorf("%w: join needs id, http_addr and raft_addr", ErrInvalid)
	}
	return nil
}

// Join adds a node: as a voter while there are fewer than MaxVoters, else
// as a non-voter; then registers it. Joining again with the same id and
// address only refreshes the registration.
func (c *Cluster) Join(ctx context.Context, req JoinRequest) error {
	if err := req.validate(); err != nil {
		return err
	}
	return c.onLeader(ctx, leaderOp{
		route: "join", in: req, idempotent: true,
		local: func(ctx context.Context) error { return c.joinLocal(ctx, req) },
	})
}

func (c *Cluster) joinLocal(ctx context.Context, req JoinRequest) error {
	if err := req.validate(); err != nil {
		return err
	}
	if !c.IsLeader() {
		return ErrNotLeader
	}
	if err := c.checkJoiner(req.node()); err != nil {
		return err
	}
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	if err := c.addServer(ctx, req.ID, req.RaftAddr); err != nil {
		return err
	}
	c.live.seen(req.ID, time.Now())
	return c.register(ctx, req.node())
}

// addServer adds id at addr to the raft configuration. The same node (its
// certificate proved the id) coming back at a new address moves there;
// another node cannot take a member's address: an operator removes that
// member first.
func (c *Cluster) addServer(ctx context.Context, id, addr string) error {
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	voters := 0
	for _, s := range conf.Servers {
		switch {
		case string(s.ID) == id && string(s.Address) == addr:
			return nil
		case string(s.Address) == addr:
			return fmt.Errorf("%w: raft address %s belongs to member %s; remove it first", ErrMemberExists, addr, s.ID)
		case string(s.ID) == id:
			c.log.Info("member moved", zap.String("id", id), zap.String("from", string(s.Address)), zap.String("to", addr))
			if err := waitFuture(ctx, c.raft.RemoveServer(s.ID, 0, enqueueWithin(ctx))); err != nil {
				return err
			}
		case s.Suffrage == raft.Voter:
			voters++
		}
	}
	add := c.raft.AddNonvoter
	if voters < c.cfg.MaxVoters {
		add = c.raft.AddVoter
	}
	if err := waitFuture(ctx, add(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueWithin(ctx))); err != nil {
		return err
	}
	c.log.Info("member added", zap.String("id", id), zap.String("raft_addr", addr), zap.Bool("voter", voters < c.cfg.MaxVoters))
	return nil
}

// register applies RegisterNode unless the state already holds the same
// registration. The caller leads. A node's labels are its declared labels
// only: the labels the scheduler uses stay as operators set them.
func (c *Cluster) register(ctx context.Context, n state.Node) error {
	// Hold label changes from reading the labels to committing them.
	c.nodeRecords.Lock()
	defer c.nodeRecords.Unlock()
	if n.DeclaredLabels == nil {
		n.DeclaredLabels = n.Labels
	}
	n.Labels = nil
	same := false
	c.machine.Read(func(s *state.State) {
		if old, ok := s.Nodes[n.ID]; ok {
			n.Labels = maps.Clone(old.Labels)
			same = sameRegistration(*old, n)
		}
	})
	if hook := registerRead.Load(); hook != nil {
		(*hook)(n.ID)
	}
	if same {
		return nil
	}
	return c.commitLocal(ctx, state.Command{Type: state.TypeRegisterNode, Body: state.RegisterNode{Node: n, Time: time.Now().UnixMilli()}})
}

// registerRead, when set (tests), runs in register between reading the
// node's labels and committing them.
var registerRead atomic.Pointer[func(id string)]

// sameRegistration compares what a node registers, not what the cluster
// keeps about it (status, join index).
func sameRegistration(a, b state.Node) bool {
	strip := func(n state.Node) state.Node {
		n.Status, n.StatusReason, n.StatusSince, n.JoinedIndex = "", "", 0, 0
		if len(n.Labels) == 0 {
			n.Labels = nil
		}
		if len(n.DeclaredLabels) == 0 {
			n.DeclaredLabels = nil
		}
		if len(n.GPUs) == 0 {
			n.GPUs = nil
		}
		return n
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

type removeRequest struct {
	ID string `json:"id"`
}

// Remove takes a node out of the cluster: out of the raft configuration,
// then out of the state with its placements. Removing the leader hands
// leadership over first. The last voter cannot be removed.
func (c *Cluster) Remove(ctx context.Context, nodeID string) error {
	if nodeID == "" {
		return fmt.Errorf("%w: node id is empty", ErrInvalid)
	}
	return c.onLeader(ctx, leaderOp{
		route: "remove", in: removeRequest{ID: nodeID}, idempotent: true,
		local: func(ctx context.Context) error { return c.removeLocal(ctx, nodeID) },
	})
}

func (c *Cluster) removeLocal(ctx context.Context, id string) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	if id == c.cfg.NodeID {
		return c.handOver(ctx)
	}
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			if err := waitFuture(ctx, c.raft.RemoveServer(s.ID, 0, enqueueWithin(ctx))); err != nil {
				return err
			}
		}
	}
	c.live.forget(id)
	entry, err := state.Encode(state.Command{Type: state.TypeRemoveNode, Body: state.RemoveNode{ID: id}})
	if err != nil {
		return err
	}
	out, err := c.applyLocal(ctx, entry)
	if err != nil {
		return err
	}
	if err := out.Err(); err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	c.log.Info("member removed", zap.String("id", id))
	return nil
}

// handOver transfers leadership away and reports ErrNotLeader, so the
// forwarding loop carries on at the new leader.
func (c *Cluster) handOver(ctx context.Context) error {
	if err := waitFuture(ctx, c.raft.LeadershipTransfer()); err != nil {
		return fmt.Errorf("cluster: hand leadership over: %w", err)
	}
	return fmt.Errorf("%w: leadership handed over", ErrNotLeader)
}

// Leave removes this node gracefully, handing leadership over first when it
// leads. The sole member of a cluster does not leave.
func (c *Cluster) Leave(ctx context.Context) error {
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	if len(conf.Servers) == 1 && string(conf.Servers[0].ID) == c.cfg.NodeID {
		c.log.Info("sole member: not leaving")
		return nil
	}
	return c.Remove(ctx, c.cfg.NodeID)
}

// isMember reports whether this node is in its latest raft configuration.
func (c *Cluster) isMember() bool {
	conf, err := c.configuration()
	if err != nil {
		return false
	}
	for _, s := range conf.Servers {
		if string(s.ID) == c.cfg.NodeID {
			return true
		}
	}
	return false
}

// joinLoop asks the Join addresses to add this node until one succeeds;
// a node without a certificate gets one first.
func (c *Cluster) joinLoop(ctx context.Context) {
	if c.keys.Get() == nil {
		if err := c.certifyLoop(ctx, c.cfg.Join); err != nil {
			c.joinFailed(err)
			return
		}
	}
	req := JoinRequest{ID: c.cfg.NodeID, HTTPAddr: c.cfg.HTTPAddr, RaftAddr: c.RaftAddr(), Node: c.selfNode()}
	for attempt := 0; ; attempt++ {
		for _, addr := range c.cfg.Join {
			if addr == c.cfg.HTTPAddr {
				continue
			}
			err := c.postOnce(ctx, addr, "join", req, nil)
			if err == nil {
				c.log.Info("joined cluster", zap.String("via", addr))
				return
			}
			if permanent(err) {
				c.joinFailed(err)
				return
			}
			c.logJoinRetry("join attempt failed", err, addr)
		}
		if !sleepCtx(ctx, backoff(attempt, 50*time.Millisecond, 5*time.Second)) {
			return
		}
	}
}

// permanent reports a refusal that retrying cannot change: a wrong
// cluster token, an id or address that a member holds, or a version too
// old for the cluster's state.
func permanent(err error) bool {
	return errors.Is(err, ErrBadToken) || errors.Is(err, ErrMemberExists) || errors.Is(err, ErrUpgradeRequired)
}

// logJoinRetry logs a failed attempt to join through addr (or to get a
// certificate or swap peers there) with its reason: at warn the first
// time, then at most once per ratelog.DefaultEvery with the number of
// failures since the last warning; the others at debug.
func (c *Cluster) logJoinRetry(msg string, err error, addr string) {
	fields := []zap.Field{zap.String("via", addr), zap.Error(err)}
	ok, n := c.joinLog.Allow(msg + "\x00" + addr)
	if !ok {
		c.log.Debug(msg, fields...)
		return
	}
	if n > 0 {
		fields = append(fields, zap.Int("repeated", n))
	}
	c.log.Warn(msg+"; retrying", fields...)
}

// joinFailed records a join that cannot succeed by retrying.
func (c *Cluster) joinFailed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	c.log.Error("cannot join the cluster", zap.Error(err))
	c.stopFor(err)
}

// JoinError is why this node gave up joining (a refused token, a taken
// id), or nil.
func (c *Cluster) JoinError() error {
	if p := c.joinErr.Load(); p != nil {
		return *p
	}
	return nil
}

// JoinFailed is closed when this node gives up joining, or stops applying
// the replicated log because its version is too old for it
// (ErrUpgradeRequired); JoinError says why. A node that runs on without a
// cluster serves nothing useful: its owner should stop it and say what to
// fix.
func (c *Cluster) JoinFailed() <-chan struct{} { return c.joinStop }

// Ready reports nil once this node is in its latest raft configuration
// and knows a leader; otherwise why it is not ready (yet).
func (c *Cluster) Ready() error {
	if err := c.JoinError(); err != nil {
		return err
	}
	if err := c.disk.err(); err != nil {
		return err
	}
	if !c.isMember() {
		return fmt.Errorf("%w: not joined yet", ErrNotMember)
	}
	if _, id := c.raft.LeaderWithID(); id == "" {
		return ErrNoLeader
	}
	if !c.caughtUp.Load() && !c.checkCaughtUp() {
		return ErrCatchingUp
	}
	return nil
}

// checkCaughtUp reports whether the local state has applied what the
// cluster committed (a linearizable read within two seconds); once it
// has, Ready no longer asks.
func (c *Cluster) checkCaughtUp() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.Read(ctx, false, func(*state.State) {}) != nil {
		return false
	}
	c.caughtUp.Store(true)
	return true
}

// backoff grows from base, doubling, up to limit.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	return min(base<<min(attempt, 16), limit)
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
