package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// liveness is the leader's in-memory record of heartbeats. It is reset when
// a node gains leadership: every member then gets DownAfter from that
// moment before it can be marked down.
type liveness struct {
	mu    sync.Mutex
	since time.Time
	last  map[string]time.Time
}

func (l *liveness) reset(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since, l.last = now, map[string]time.Time{}
}

func (l *liveness) seen(id string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.since, l.last = now, map[string]time.Time{}
	}
	l.last[id] = now
}

func (l *liveness) forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.last, id)
}

// lastSeen is the last heartbeat, or the start of this leadership.
func (l *liveness) lastSeen(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[id]; ok {
		return t
	}
	return l.since
}

type heartbeatRequest struct {
	Node state.Node `json:"node"`
}

// heartbeatLoop tells the leader this node is alive every HeartbeatInterval.
// The heartbeat carries the node's registration, so the leader also
// registers it (again) when the state lacks or differs from it.
func (c *Cluster) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.IsLeader() {
			continue // the leader loop records the leader itself
		}
		err := c.heartbeat(ctx)
		if errors.Is(err, ErrNotMember) && len(c.cfg.Join) > 0 {
			c.log.Warn("leader says this node is not a member; joining again")
			c.joinLoop(ctx)
		} else if err != nil {
			c.logRetry("heartbeat failed", err)
		}
	}
}

func (c *Cluster) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(2*c.cfg.HeartbeatInterval, time.Second))
	defer cancel()
	n := c.selfNode()
	if _, id := c.raft.LeaderWithID(); id == "" && !c.IsLeader() && c.heartbeatAnyPeer(ctx, n) == nil {
		return nil
	}
	return c.onLeader(ctx, leaderOp{
		route: "heartbeat", in: heartbeatRequest{Node: n}, idempotent: true,
		local: func(ctx context.Context) error { return c.heartbeatLocal(ctx, n) },
	})
}

// heartbeatAnyPeer offers the heartbeat to the nodes it joined through and
// every other member it knows by HTTP address, for a node that knows no
// leader: one that came back at another
// raft address hears from none until the leader, told by this heartbeat,
// moves it in the configuration.
func (c *Cluster) heartbeatAnyPeer(ctx context.Context, n state.Node) error {
	addrs := slices.Clone(c.cfg.Join) // a restarted node's state may be empty until it hears from a leader
	c.machine.Read(func(s *state.State) {
		for _, p := range s.NodeList() {
			if p.ID != c.cfg.NodeID && p.HTTPAddr != "" {
				addrs = append(addrs, p.HTTPAddr)
			}
		}
	})
	err := ErrNoLeader
	for _, addr := range addrs {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err = c.post(pctx, addr, "heartbeat", true, heartbeatRequest{Node: n}, nil)
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

// heartbeatLocal records a heartbeat on the leader, registers the node if
// needed and marks it ready again if it was down.
func (c *Cluster) heartbeatLocal(ctx context.Context, n state.Node) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	if n.ID == "" {
		return fmt.Errorf("%w: heartbeat without node id", ErrInvalid)
	}
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	if !hasServer(conf, n.ID) {
		return fmt.Errorf("%w: %s", ErrNotMember, n.ID)
	}
	if err := c.followMove(ctx, conf, n); err != nil {
		return err
	}
	c.live.seen(n.ID, time.Now())
	if err := c.register(ctx, n); err != nil {
		return err
	}
	if c.nodeStatus(n.ID) == state.NodeDown {
		return c.setStatus(ctx, n.ID, state.NodeReady, "heartbeats resumed")
	}
	return nil
}

// followMove updates the raft configuration when a member comes back at
// another raft address (a restarted container or pod with a new IP):
// raft would go on sending to the old one and count the member as lost.
func (c *Cluster) followMove(ctx context.Context, conf raft.Configuration, n state.Node) error {
	if n.RaftAddr == "" || !specifiedHost(n.RaftAddr) {
		return nil
	}
	for _, s := range conf.Servers {
		if string(s.ID) == n.ID && string(s.Address) != n.RaftAddr {
			return c.addServer(ctx, n.ID, n.RaftAddr)
		}
	}
	return nil
}

// specifiedHost reports whether addr names a host peers can dial (not
// 0.0.0.0 or ::).
func specifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host != "" && (ip == nil || !ip.IsUnspecified())
}

func hasServer(conf raft.Configuration, id string) bool {
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

func (c *Cluster) nodeStatus(id string) state.NodeStatus {
	var st state.NodeStatus
	c.machine.Read(func(s *state.State) {
		if n, ok := s.Nodes[id]; ok {
			st = n.Status
		}
	})
	return st
}

func (c *Cluster) setStatus(ctx context.Context, id string, st state.NodeStatus, reason string) error {
	entry, err := state.Encode(state.Command{Type: state.TypeSetNodeStatus, Body: state.SetNodeStatus{
		ID: id, Status: st, Reason: reason, Time: time.Now().UnixMilli(),
	}})
	if err != nil {
		return err
	}
	out, err := c.applyLocal(ctx, entry)
	if err != nil {
		return err
	}
	c.log.Info("node status", zap.String("id", id), zap.String("status", string(st)), zap.String("reason", reason))
	return out.Err()
}

// leaderLoop runs on every node and works while the node leads: it records
// the leader's own liveness and registration, marks silent nodes down and
// keeps the voter set full.
func (c *Cluster) leaderLoop(ctx context.Context) {
	t := time.NewTicker(min(c.cfg.HeartbeatInterval, c.cfg.DownAfter/4))
	defer t.Stop()
	var term uint64
	for {
		changed := c.leaderChanged()
		if c.IsLeader() {
			if now := c.raft.CurrentTerm(); now != term {
				term = now
				c.live.reset(time.Now())
			}
			c.leaderTick(ctx)
		} else {
			term = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

func (c *Cluster) leaderTick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.DownAfter, time.Second))
	defer cancel()
	if err := c.heartbeatLocal(ctx, c.selfNode()); err != nil {
		c.logRetry("leader self-registration failed", err)
		return
	}
	if err := c.publishCA(ctx); err != nil {
		c.logRetry("recording the cluster CA failed", err)
	}
	if err := c.markSilent(ctx); err != nil {
		c.logRetry("liveness check failed", err)
		return
	}
	if err := c.balanceVoters(ctx); err != nil {
		c.logRetry("voter promotion failed", err)
	}
}

// markSilent marks ready members down after DownAfter without heartbeat.
func (c *Cluster) markSilent(ctx context.Context) error {
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	now := time.Now()
	var silent []string
	c.machine.Read(func(s *state.State) {
		for _, srv := range conf.Servers {
			n, ok := s.Nodes[string(srv.ID)]
			if ok && n.Status == state.NodeReady && now.Sub(c.live.lastSeen(n.ID)) > c.cfg.DownAfter {
				silent = append(silent, n.ID)
			}
		}
	})
	for _, id := range silent {
		reason := fmt.Sprintf("no heartbeat for %s", c.cfg.DownAfter)
		if err := c.setStatus(ctx, id, state.NodeDown, reason); err != nil {
			return err
		}
	}
	return nil
}

// voterView sorts the configuration for promotion decisions.
type voterView struct {
	voters     int
	downVoters []string // voters marked down, never this node
	readyNon   []string // non-voters that are ready and heartbeating
}

func (c *Cluster) viewVoters(conf raft.Configuration) voterView {
	var v voterView
	now := time.Now()
	c.machine.Read(func(s *state.State) {
		for _, srv := range conf.Servers {
			id := string(srv.ID)
			n, ok := s.Nodes[id]
			if srv.Suffrage == raft.Voter {
				v.voters++
				if ok && n.Status == state.NodeDown && id != c.cfg.NodeID {
					v.downVoters = append(v.downVoters, id)
				}
				continue
			}
			if ok && n.Status == state.NodeReady && now.Sub(c.live.lastSeen(id)) <= c.cfg.DownAfter {
				v.readyNon = append(v.readyNon, id)
			}
		}
	})
	sort.Strings(v.downVoters)
	sort.Strings(v.readyNon)
	return v
}

// balanceVoters keeps MaxVoters voters: it promotes a ready non-voter when
// a voter is missing, and replaces a down voter by a ready non-voter,
// promoting before demoting so quorum never shrinks below the live voters.
func (c *Cluster) balanceVoters(ctx context.Context) error {
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	v := c.viewVoters(conf)
	switch {
	case len(v.downVoters) > 0 && v.voters > c.cfg.MaxVoters:
		return c.demote(ctx, v.downVoters[0])
	case len(v.readyNon) == 0:
		return nil
	case v.voters < c.cfg.MaxVoters:
		return c.promote(ctx, conf, v.readyNon[0])
	case len(v.downVoters) > 0:
		if err := c.promote(ctx, conf, v.readyNon[0]); err != nil {
			return err
		}
		return c.demote(ctx, v.downVoters[0])
	}
	return nil
}

func (c *Cluster) promote(ctx context.Context, conf raft.Configuration, id string) error {
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			c.log.Info("promoting non-voter", zap.String("id", id))
			return waitFuture(ctx, c.raft.AddVoter(s.ID, s.Address, 0, enqueueWithin(ctx)))
		}
	}
	return nil
}

func (c *Cluster) demote(ctx context.Context, id string) error {
	c.log.Info("demoting down voter", zap.String("id", id))
	return waitFuture(ctx, c.raft.DemoteVoter(raft.ServerID(id), 0, enqueueWithin(ctx)))
}
