package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/quota"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/node/router/load"
)

// shareLoad keeps this node's view of its peers' load fed: it asks each
// ready peer for its load exchange every LoadInterval until ctx ends.
func (n *Node) shareLoad(ctx context.Context) {
	runLoadExchange(ctx, loadDeps{hc: n.peerHC, scheme: n.peerScheme, router: n.router, quota: n.quota,
		peers: n.loadPeers, interval: n.cfg.Routing.LoadInterval, log: n.log})
}

// loadDeps are what the load exchange needs of a node; the exchange
// benchmark builds them for nodes that are not whole Nodes.
type loadDeps struct {
	hc       *http.Client
	scheme   string
	router   *router.Router
	quota    *quota.Limiter // nil: no quotas
	peers    func() []load.Peer
	interval time.Duration
	log      *zap.Logger
}

// runLoadExchange runs the load exchange of one node until ctx ends.
func runLoadExchange(ctx context.Context, d loadDeps) {
	f := &loadFetcher{hc: d.hc, scheme: d.scheme, router: d.router, quota: d.quota, after: map[string]uint64{}}
	load.NewPoller(load.PollerConfig{
		View:     d.router.View(),
		Interval: d.interval,
		Peers:    d.peers,
		Fetch:    f.fetch,
		OnError: func(p load.Peer, err error) {
			d.log.Warn("cannot fetch a peer's load", zap.String("peer", p.ID), zap.Error(err))
		},
	}).Run(ctx)
}

// loadPeers are the other members that are not down.
func (n *Node) loadPeers() []load.Peer {
	var peers []load.Peer
	n.cluster.Machine().Read(func(s *state.State) {
		for _, m := range s.NodeList() {
			if m.ID != n.cfg.NodeID && m.Status != state.NodeDown && m.HTTPAddr != "" {
				peers = append(peers, load.Peer{ID: m.ID, Addr: m.HTTPAddr})
			}
		}
	})
	return peers
}

// loadFetcher fetches peers' load exchanges, remembering per peer the
// last prefix sequence number it has, so each answer carries only news.
type loadFetcher struct {
	hc     *http.Client
	scheme string
	router *router.Router
	quota  *quota.Limiter

	mu    sync.Mutex
	after map[string]uint64
}

func (f *loadFetcher) fetch(ctx context.Context, p load.Peer) (load.Report, error) {
	f.mu.Lock()
	after := f.after[p.ID]
	f.mu.Unlock()
	url := f.scheme + "://" + p.Addr + "/internal/v1/load?after=" + strconv.FormatUint(after, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return load.Report{}, err
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return load.Report{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return load.Report{}, fmt.Errorf("load from %s: HTTP %d", p.ID, resp.StatusCode)
	}
	var ex api.LoadExchange
	if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil {
		return load.Report{}, fmt.Errorf("load from %s: %w", p.ID, err)
	}
	if ex.Node == p.ID {
		f.router.Learn(ex.Node, ex.Prefixes)
		if f.quota != nil && ex.Quota != nil && ex.Quota.Node == p.ID {
			f.quota.Learn(*ex.Quota)
		}
		f.mu.Lock()
		f.after[p.ID] = ex.PrefixSeq
		f.mu.Unlock()
	}
	return ex.Report, nil
}
