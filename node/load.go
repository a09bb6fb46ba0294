package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/quota"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/node/router/load"
)

// This file wires the load exchange. Each node publishes its load on a
// feed (load.Feed) that every peer watches over one long-lived request,
// GET /internal/v1/load?watch=1 on the peer channel: a frame when the
// load changed (at most one per LoadInterval) and a keepalive when it did
// not. A frame is the one-shot answer of GET /internal/v1/load
// (api.LoadExchange: the report, the conversation prefixes published
// since the last frame, the quota usage), one JSON object per line.

// maxPrefixes bounds the prefix keys one frame may carry: a publisher
// holds at most 1024 (balance.Affinity).
const maxPrefixes = 4096

// loadFeed makes this node's load feed and gives it to the API, which
// serves it to peers; shareLoad runs it.
func (n *Node) loadFeed(cfg *api.Config) {
	src := loadSource{router: n.router, quota: n.quota}
	n.feed = load.NewFeed(load.FeedConfig{Build: src.build, Interval: n.cfg.Routing.LoadInterval})
	n.router.OnLoadChange(n.feed.Kick) // push a change at once, not at the next tick
	cfg.LoadFeed = n.feed
}

// shareLoad publishes this node's load to its peers and keeps its view of
// theirs fed until ctx ends.
func (n *Node) shareLoad(ctx context.Context) {
	runLoadExchange(ctx, loadDeps{hc: n.peerHC, scheme: n.peerScheme, router: n.router, quota: n.quota,
		feed: n.feed, peers: n.loadPeers, interval: n.cfg.Routing.LoadInterval, log: n.log})
}

// loadDeps are what the load exchange needs of a node; the exchange
// benchmark builds them for nodes that are not whole Nodes.
type loadDeps struct {
	hc       *http.Client
	scheme   string
	router   *router.Router
	quota    *quota.Limiter // nil: no quotas
	feed     *load.Feed     // the feed the API serves
	peers    func() []load.Peer
	interval time.Duration
	log      *zap.Logger
}

// runLoadExchange runs one node's feed and its watches of its peers'
// feeds until ctx ends.
func runLoadExchange(ctx context.Context, d loadDeps) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.feed.Run(ctx)
	}()
	watchLoad(ctx, d)
	<-done
}

// watchLoad keeps the node's view of its peers' load fed from their
// feeds until ctx ends.
func watchLoad(ctx context.Context, d loadDeps) {
	sink := &loadSink{hc: d.hc, scheme: d.scheme, router: d.router, quota: d.quota}
	load.NewSubscriber(load.SubscriberConfig{
		View:  d.router.View(),
		Peers: d.peers,
		// The peer list changes rarely: read it no more often than
		// DefaultPeersInterval, however fast loads are pushed.
		Interval: max(d.interval, load.DefaultPeersInterval),
		Open:     sink.open,
		Decode:   sink.decode,
		OnError: func(p load.Peer, err error) {
			d.log.Warn("cannot watch a peer's load", zap.String("peer", p.ID), zap.Error(err))
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

// loadSource builds this node's frames.
type loadSource struct {
	router *router.Router
	quota  *quota.Limiter
}

// build is the frame with the prefix keys published after after.
func (s loadSource) build(after uint64) load.Frame {
	ex := api.LoadExchange{Exchange: s.router.Exchange(after)}
	if s.quota != nil {
		r := s.quota.Report()
		ex.Quota = &r
	}
	data := encodeFrame(ex)
	ex.Seq = 0
	return load.Frame{Data: data, Same: encodeFrame(ex), After: after, Next: ex.PrefixSeq}
}

// encodeFrame is ex as one line of JSON.
func encodeFrame(ex api.LoadExchange) []byte {
	b, err := json.Marshal(ex)
	if err != nil {
		panic(fmt.Sprintf("load frame: %v", err)) // plain data: cannot fail
	}
	return append(b, '\n')
}

// loadSink opens peers' feeds and takes in their frames.
type loadSink struct {
	hc     *http.Client
	scheme string
	router *router.Router
	quota  *quota.Limiter
}

// errNoFeed: a peer that does not serve a feed.
var errNoFeed = errors.New("the peer serves no load feed")

func (s *loadSink) open(ctx context.Context, p load.Peer) (io.ReadCloser, error) {
	url := s.scheme + "://" + p.Addr + "/internal/v1/load?watch=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: load from %s: HTTP %d", errNoFeed, p.ID, resp.StatusCode)
	}
	return resp.Body, nil
}

// decode takes in one frame of p's feed: its prefixes and quota usage go
// to the router and the limiter, its report is returned for the View.
func (s *loadSink) decode(p load.Peer, frame []byte) (load.Report, error) {
	var ex api.LoadExchange
	if err := json.Unmarshal(frame, &ex); err != nil {
		return load.Report{}, err
	}
	if ex.Node != p.ID {
		return ex.Report, nil // the Subscriber refuses it
	}
	if len(ex.Prefixes) > maxPrefixes {
		return load.Report{}, fmt.Errorf("%d prefix keys in one frame, more than %d", len(ex.Prefixes), maxPrefixes)
	}
	s.router.Learn(ex.Node, ex.Prefixes)
	if s.quota != nil && ex.Quota != nil && ex.Quota.Node == p.ID {
		s.quota.Learn(*ex.Quota)
	}
	return ex.Report, nil
}
