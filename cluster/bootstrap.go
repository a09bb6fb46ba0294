package cluster

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// peerInfo is what forming nodes tell each other.
type peerInfo struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
}

// peersResponse answers a peer exchange.
type peersResponse struct {
	Peers []peerInfo `json:"peers"`
	// Formed is set once the answering node belongs to a cluster: latecomers
	// then join instead of bootstrapping.
	Formed bool `json:"formed"`
}

// peerBook holds the peers this node learnt while forming the cluster. It
// also serves as a fallback address book before registrations are applied.
type peerBook struct {
	mu      sync.Mutex
	byID    map[string]peerInfo
	changed chan struct{}
}

func (b *peerBook) init() {
	b.byID, b.changed = map[string]peerInfo{}, make(chan struct{})
}

// add records p and reports whether it was new or changed.
func (b *peerBook) add(p peerInfo) bool {
	if p.ID == "" || p.RaftAddr == "" {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byID[p.ID] == p {
		return false
	}
	b.byID[p.ID] = p
	close(b.changed)
	b.changed = make(chan struct{})
	return true
}

func (b *peerBook) get(id string) peerInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byID[id]
}

func (b *peerBook) list() []peerInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]peerInfo, 0, len(b.byID))
	for _, p := range b.byID {
		out = append(out, p)
	}
	return sortedPeers(out)
}

func (b *peerBook) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func sortedPeers(ps []peerInfo) []peerInfo {
	out := append([]peerInfo(nil), ps...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// formed reports whether this node has a cluster: a configuration with
// servers in it.
func (c *Cluster) formed() bool {
	conf, err := c.configuration()
	return err == nil && len(conf.Servers) > 0
}

// formCreds gets this node its certificate while a cluster forms: first
// is the member that makes the CA.
func (c *Cluster) formCreds(ctx context.Context, first peerInfo) error {
	switch {
	case c.keys.Get() != nil:
		return nil
	case first.ID == c.cfg.NodeID:
		return c.newCA()
	}
	return c.certifyLoop(ctx, []string{first.HTTPAddr})
}

// exchangePeers serves a forming peer: remember it, answer with all known.
func (c *Cluster) exchangePeers(p peerInfo) peersResponse {
	if c.peers.add(p) {
		c.log.Debug("learnt peer", zap.String("id", p.ID), zap.String("http_addr", p.HTTPAddr))
	}
	return peersResponse{Peers: c.peers.list(), Formed: c.formed()}
}

// expectLoop forms a cluster of BootstrapExpect nodes. Nodes swap what
// they know with their Join addresses; once BootstrapExpect distinct nodes
// are known, the lowest ids bootstrap with the same configuration (raft
// accepts the same bootstrap on every member). A node that finds a formed
// cluster, or is not among the lowest ids, joins instead.
func (c *Cluster) expectLoop(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		wait := c.peers.wait()
		if c.formed() {
			return
		}
		found, err := c.swapPeers(ctx)
		if err != nil {
			c.joinFailed(err)
			return
		}
		if found {
			c.joinLoop(ctx)
			return
		}
		if known := c.peers.list(); len(known) >= c.cfg.BootstrapExpect {
			c.formWith(ctx, known[:c.cfg.BootstrapExpect])
			return
		}
		t := time.NewTimer(backoff(attempt, 50*time.Millisecond, 2*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
}

// swapPeers exchanges peers with every Join address and reports whether
// one of them already belongs to a cluster. A refusal that retrying cannot
// change (a wrong token) is its error.
func (c *Cluster) swapPeers(ctx context.Context) (bool, error) {
	self := c.selfPeer()
	found := false
	for _, addr := range c.cfg.Join {
		if addr == c.cfg.HTTPAddr {
			continue
		}
		var resp peersResponse
		if err := c.tokenCall(ctx, addr, "peers", self, &resp); err != nil {
			if permanent(err) {
				return false, err
			}
			c.logJoinRetry("peer exchange failed", err, addr)
			continue
		}
		for _, p := range resp.Peers {
			c.peers.add(p)
		}
		found = found || resp.Formed
	}
	return found, nil
}

// formWith bootstraps with members when this node is one of them. The
// first of them by id makes the cluster CA; the others get their
// certificates from it before raft starts.
func (c *Cluster) formWith(ctx context.Context, members []peerInfo) {
	for _, p := range members {
		if p.ID != c.cfg.NodeID {
			continue
		}
		if err := c.formCreds(ctx, members[0]); err != nil {
			c.joinFailed(err)
			return
		}
		if err := c.bootstrap(members); err != nil {
			c.log.Error("bootstrap-expect failed", zap.Error(err))
		}
		return
	}
	c.log.Info("cluster forms without this node; joining it")
	c.joinLoop(ctx)
}
