package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/ratelog"
)

// Errors of this package. Match them with errors.Is.
var (
	// ErrNotLeader is returned by leader-only work on a follower. The
	// forwarding path retries it elsewhere; callers see it rarely.
	ErrNotLeader = errors.New("cluster: this node is not the leader")
	// ErrNoLeader means no leader is known (election under way or quorum
	// lost) until the caller's deadline.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrCatchingUp means the node has not yet applied what the cluster
	// had committed when it asked: its state may miss recent changes.
	ErrCatchingUp = errors.New("cluster: this node is catching up with the cluster's state")
	// ErrIndeterminate means a write may or may not have been applied: it
	// was handed to raft (or to the leader) and the answer was lost. It is
	// never a failure; retry with the same idempotency key to learn.
	ErrIndeterminate = errors.New("cluster: write outcome unknown")
	// ErrBadToken means a peer refused this node's cluster token, or a
	// caller presented a wrong one.
	ErrBadToken = errors.New("cluster: cluster token refused (the nodes are configured with different tokens)")
	// ErrNotPeer means an internal call came without a certificate of the
	// cluster, or named another node than its certificate does.
	ErrNotPeer = errors.New("cluster: the caller is not a member of this cluster")
	// ErrMemberExists means a node tried to take the id or address of an
	// existing member; an operator must remove that member first.
	ErrMemberExists = errors.New("cluster: member exists")
	// ErrRestoreNotForced guards RestoreSnapshot, which overwrites the
	// whole desired state.
	ErrRestoreNotForced = errors.New("cluster: restoring a snapshot replaces the whole cluster state; pass force to confirm")
	// ErrNotMember is returned for a node that is not in the raft
	// configuration (for example a heartbeat from a removed node).
	ErrNotMember = errors.New("cluster: not a member")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("cluster: closed")
	// ErrInvalid reports a malformed request or command.
	ErrInvalid = errors.New("cluster: invalid request")
	// ErrExpired means the caller's deadline had passed before the work
	// reached raft: nothing was proposed, and nothing will be.
	ErrExpired = errors.New("cluster: the caller's deadline passed before the work was proposed")
	// ErrUpgradeRequired means a node's version is too old for what was
	// asked (versions.go): the leader refuses a command type, a restore or
	// a join until every member knows it, and a node that meets an
	// unknown command type in its log stops with it.
	ErrUpgradeRequired = errors.New("cluster: upgrade required")
)

// RaftTimings tune raft. A zero field keeps raft's default, given after each.
type RaftTimings struct {
	HeartbeatTimeout   time.Duration // 1s: a follower without contact this long starts an election
	ElectionTimeout    time.Duration // 1s: a candidate without a result this long retries
	LeaderLeaseTimeout time.Duration // 500ms: a leader without quorum contact this long steps down
	CommitTimeout      time.Duration // 50ms: idle heartbeat that carries the commit index
	SnapshotInterval   time.Duration // 120s: how often raft checks whether to snapshot
	SnapshotThreshold  uint64        // 8192: new entries since the last snapshot before one is taken
	TrailingLogs       uint64        // 10240: entries kept after a snapshot for followers that lag
	// LogSegmentSize is the size of each raft log file (64 MiB, which
	// raft-wal preallocates); tests make it small to rotate often.
	LogSegmentSize int
}

// Config configures one node's cluster membership.
type Config struct {
	NodeID   string
	HTTPAddr string // advertised host:port of this node's HTTP API, where peers call Handler
	RaftAddr string // raft bind and advertise address (TCP); port 0 picks one (see Cluster.RaftAddr)
	DataDir  string // raft log, stable store and snapshots live under DataDir/raft

	Bootstrap       bool     // start a new single-node cluster; a no-op once state exists
	BootstrapExpect int      // form a cluster once this many fresh nodes know each other through Join
	Join            []string // members' HTTP API, host:port or http(s) URL (see JoinAddress); retried until it succeeds

	// Token is the cluster secret: a node that joins proves it holds it
	// to get its certificate. It is required.
	Token     string
	MaxVoters int // 3 or 5 (default 3); further nodes join as non-voters

	HeartbeatInterval time.Duration // node to leader liveness heartbeat (default 1s)
	DownAfter         time.Duration // the leader marks a node down after this without heartbeat (default 10s)

	Raft RaftTimings
	// Scheduling configures the scheduler the leader runs.
	Scheduling SchedulingConfig

	// Keyring holds this node's cluster certificate: raft and every peer
	// call use mutual TLS with it. Put the operator's own certificates in
	// it before Open; otherwise Open loads the ones this node saved under
	// DataDir/tls, or, for a node that bootstraps alone, creates a new
	// cluster CA; a joining node gets its certificate when it joins. The
	// caller serves HTTPS to peers (ServerName) with the same keyring.
	Keyring *pki.Keyring
	// StreamLayer optionally wraps the raft stream layer (fault injection).
	StreamLayer func(raft.StreamLayer) raft.StreamLayer
	// HTTPClient is used for peer calls; nil builds one from Keyring.
	HTTPClient *http.Client
	// Dial, when set, opens the connections of join requests (tests
	// inject faults there).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Node is registered for this node; ID and addresses are filled in.
	Node   state.Node
	Logger *zap.Logger
}

func (cfg *Config) setDefaults() error {
	switch {
	case cfg.NodeID == "":
		return fmt.Errorf("%w: NodeID is empty", ErrInvalid)
	case cfg.HTTPAddr == "":
		return fmt.Errorf("%w: HTTPAddr is empty", ErrInvalid)
	case cfg.RaftAddr == "":
		return fmt.Errorf("%w: RaftAddr is empty", ErrInvalid)
	case cfg.DataDir == "":
		return fmt.Errorf("%w: DataDir is empty", ErrInvalid)
	case cfg.Token == "":
		return fmt.Errorf("%w: the cluster token is empty", ErrInvalid)
	}
	if err := pki.CheckNodeID(cfg.NodeID); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := cfg.normalizeJoin(); err != nil {
		return err
	}
	if cfg.Keyring == nil {
		cfg.Keyring = &pki.Keyring{}
	}
	if cfg.MaxVoters == 0 {
		cfg.MaxVoters = 3
	}
	if cfg.MaxVoters < 1 {
		return fmt.Errorf("%w: MaxVoters %d", ErrInvalid, cfg.MaxVoters)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	cfg.Scheduling.setDefaults()
	return nil
}

func (t RaftTimings) apply(rc *raft.Config) {
	set := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	set(&rc.HeartbeatTimeout, t.HeartbeatTimeout)
	set(&rc.ElectionTimeout, t.ElectionTimeout)
	set(&rc.LeaderLeaseTimeout, t.LeaderLeaseTimeout)
	set(&rc.CommitTimeout, t.CommitTimeout)
	set(&rc.SnapshotInterval, t.SnapshotInterval)
	if t.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.TrailingLogs > 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
}

// Cluster is one node's membership in the raft group.
type Cluster struct {
	// nodeRecords orders, on the leader, a registration (which reads the
	// node's labels and commits them back) against label changes, so
	// that a change applied in between is not overwritten.
	nodeRecords sync.Mutex
	// caughtUp is set once the local state has applied what the cluster
	// had committed (a linearizable read succeeded).
	caughtUp atomic.Bool
	cfg      Config
	log      *zap.Logger
	raft     *raft.Raft
	fsm      *fsm
	machine  *state.Machine
	store    *walStore
	disk     *diskHealth
	trans    *raft.NetworkTransport
	stream   *streamLayer
	client   *http.Client
	ownHTTP  bool // client was built here and is closed here
	keys     *pki.Keyring
	stable   *closingStable
	// running is raft once started: the stream layer asks it who may
	// connect.
	running atomic.Pointer[raft.Raft]

	obs      *raft.Observer
	obsCh    chan raft.Observation
	obsDone  chan struct{}
	obsWG    sync.WaitGroup
	changeMu sync.Mutex
	changed  chan struct{} // closed and replaced on every leader or raft state change
	leader   atomic.Pointer[leaderMark]

	nodeMu    sync.Mutex
	self      state.Node    // this node's registration, carried by heartbeats
	memberMu  sync.Mutex    // serialises membership changes on the leader
	readyTerm atomic.Uint64 // term in which this leader committed a barrier
	live      liveness
	joinErr   atomic.Pointer[error]
	joinStop  chan struct{}   // closed when joinErr is set
	joinLog   ratelog.Limiter // failed attempts to join, per address
	sched     schedRecord
	peers     peerBook
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open opens the stores, starts raft and bootstraps a single-node cluster
// when asked and no state exists yet. Call Run for the background work and
// Close when done.
func Open(cfg Config) (*Cluster, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger.Named("cluster"), machine: state.NewMachine(), changed: make(chan struct{}),
		keys: cfg.Keyring, joinStop: make(chan struct{})}
	c.fsm = &fsm{m: c.machine, log: c.log, halt: c.halt}
	c.disk = newDiskHealth(cfg.DataDir, c.log.Named("disk"))
	if err := c.loadCreds(); err != nil {
		return nil, err
	}
	c.peers.init()
	if err := c.openRaft(); err != nil {
		return nil, err
	}
	c.SetNode(cfg.Node)
	c.initHTTP()
	c.peers.add(c.selfPeer())
	c.startObserver()
	if cfg.Bootstrap {
		if err := c.bootstrap([]peerInfo{c.selfPeer()}); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) openRaft() error {
	dir := filepath.Join(c.cfg.DataDir, "raft")
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return fmt.Errorf("cluster: data dir: %w", err)
	}
	hl := newHCLog(c.cfg.Logger.Named("raft"))
	store, err := openWALStore(filepath.Join(dir, "wal"), cmp.Or(c.cfg.Raft.LogSegmentSize, raftwal.DefaultSegmentSize), hl.Named("wal"), c.disk)
	if err != nil {
		return fmt.Errorf("cluster: open raft log: %w", err)
	}
	c.store = store
	snaps, err := newSnapshotStore(dir, hl.Named("snapshots"), c.disk)
	if err != nil {
		c.closeStores()
		return fmt.Errorf("cluster: open snapshots: %w", err)
	}
	layer, err := listenStream(c.cfg.RaftAddr, c.keys, c.acceptPeer)
	if err != nil {
		c.closeStores()
		return err
	}
	var stream raft.StreamLayer = layer
	if c.cfg.StreamLayer != nil {
		stream = c.cfg.StreamLayer(stream)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl.Named("transport"),
		// No pipelining: raft v1.8.0's pipeline can deadlock when its
		// decoder stops first (the sender waits on a full in-flight queue
		// whose reader waits on the stopped decoder), which hung Close;
		// and raft's own measurements show pipelining gains little.
		MaxRPCsInFlight: 1,
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.NodeID)
	rc.Logger = hl
	c.cfg.Raft.apply(rc)
	c.stable = newClosingStable(store)
	r, err := raft.NewRaft(rc, c.fsm, store, c.stable, snaps, trans)
	if err != nil {
		trans.Close()
		layer.closeAll()
		c.closeStores()
		if why := c.JoinError(); why != nil {
			return why // say why, not raft's summary
		}
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	c.raft, c.trans, c.stream = r, trans, layer
	c.running.Store(r)
	return nil
}

// acceptPeer decides who may open a raft connection: a member of the
// latest configuration, or anyone of the cluster CA while this node has
// none (it is joining, and the leader is about to reach it).
func (c *Cluster) acceptPeer(id string) error {
	r := c.running.Load()
	if r == nil {
		return fmt.Errorf("%w: raft is not running yet", ErrNotPeer)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return nil
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return nil
		}
	}
	c.log.Warn("refused a raft connection from a node that is not a member", zap.String("id", id))
	return fmt.Errorf("%w: %s is not in the raft configuration", ErrNotPeer, id)
}

func (c *Cluster) closeStores() error {
	if c.store == nil {
		return nil
	}
	return c.store.Close()
}

func (c *Cluster) initHTTP() {
	c.client = c.cfg.HTTPClient
	if c.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = c.keys.ClientConfig(ServerName)
		c.client, c.ownHTTP = &http.Client{Transport: tr}, true
	}
}

// Keyring is this node's cluster certificate holder.
func (c *Cluster) Keyring() *pki.Keyring { return c.keys }

// bootstrap starts a new cluster with the given members (the first
// MaxVoters by id vote). It is a no-op once raft has state.
func (c *Cluster) bootstrap(members []peerInfo) error {
	var conf raft.Configuration
	for i, p := range sortedPeers(members) {
		s := raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)}
		if i >= c.cfg.MaxVoters {
			s.Suffrage = raft.Nonvoter
		}
		conf.Servers = append(conf.Servers, s)
	}
	err := c.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	c.log.Info("bootstrapped cluster", zap.Int("members", len(members)))
	return nil
}

// Run does the background work until ctx ends: forming or joining the
// cluster, heartbeats to the leader, and the leader's liveness, voter and
// scheduling work while this node leads.
func (c *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){c.form, c.heartbeatLoop, c.leaderLoop, c.scheduleLoop, c.probeLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// form gets a fresh node into a cluster; a member (restarted, or just
// bootstrapped) has nothing to do.
func (c *Cluster) form(ctx context.Context) {
	switch {
	case c.isMember():
	case c.cfg.BootstrapExpect > 0:
		c.expectLoop(ctx)
	case len(c.cfg.Join) > 0:
		c.joinLoop(ctx)
	}
}

// Close shuts raft down and closes the stores. Stop Run first.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.raft.DeregisterObserver(c.obs)
		close(c.obsDone)
		c.obsWG.Wait()
		// Every connection is cut before the stable store lets go of a
		// write it is retrying (see closingStable), and raft can only
		// finish once it has.
		shutdown := c.raft.Shutdown()
		c.trans.Close()
		c.stream.closeAll()
		c.stable.shut()
		c.store.abort() // raft may be waiting in a reopen of its log
		err := shutdown.Error()
		if werr := c.closeStores(); err == nil {
			err = werr
		}
		if c.ownHTTP {
			c.client.CloseIdleConnections()
		}
		c.closeErr = err
	})
	return c.closeErr
}

// Machine is the local state: possibly stale, never waits on raft. The
// inference path reads it.
func (c *Cluster) Machine() *state.Machine { return c.machine }

// SetNode changes what this node registers (labels, GPUs, version, models
// on disk...); ID, addresses and command level are this node's own. Heartbeats own the registration:
// the next one re-registers the node when it differs from the state, so
// other code should call this rather than apply RegisterNode for this node.
func (c *Cluster) SetNode(n state.Node) {
	n.ID, n.HTTPAddr, n.RaftAddr = c.cfg.NodeID, c.cfg.HTTPAddr, c.RaftAddr()
	n.CommandLevel = state.Level() // what this build applies, whatever the caller said
	c.nodeMu.Lock()
	defer c.nodeMu.Unlock()
	c.self = n
}

// selfNode is this node's registration.
func (c *Cluster) selfNode() state.Node {
	c.nodeMu.Lock()
	defer c.nodeMu.Unlock()
	return c.self
}

// NodeID is this node's id.
func (c *Cluster) NodeID() string { return c.cfg.NodeID }

// RaftAddr is the advertised raft address (the bound one when the
// configured port was 0).
func (c *Cluster) RaftAddr() string { return string(c.trans.LocalAddr()) }

// IsLeader reports whether this node leads now.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

// startObserver wakes waiters on leader and raft state changes.
func (c *Cluster) startObserver() {
	c.obsCh, c.obsDone = make(chan raft.Observation, 16), make(chan struct{})
	c.obs = raft.NewObserver(c.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	c.raft.RegisterObserver(c.obs)
	c.obsWG.Add(1)
	go func() {
		defer c.obsWG.Done()
		for {
			select {
			case <-c.obsDone:
				return
			case <-c.obsCh:
				c.trackLeader(time.Now())
				c.notifyChange()
			}
		}
	}()
}

func (c *Cluster) notifyChange() {
	c.changeMu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.changeMu.Unlock()
}

// leaderChanged returns a channel closed at the next leadership or raft
// state change.
func (c *Cluster) leaderChanged() <-chan struct{} {
	c.changeMu.Lock()
	defer c.changeMu.Unlock()
	return c.changed
}

// selfPeer is this node's identity as peers see it.
func (c *Cluster) selfPeer() peerInfo {
	return peerInfo{ID: c.cfg.NodeID, HTTPAddr: c.cfg.HTTPAddr, RaftAddr: c.RaftAddr()}
}

// httpAddrOf finds a member's HTTP address: from the replicated state, or
// from peers learnt while forming the cluster.
func (c *Cluster) httpAddrOf(id string) string {
	var addr string
	c.machine.Read(func(s *state.State) {
		if n, ok := s.Nodes[id]; ok {
			addr = n.HTTPAddr
		}
	})
	if addr == "" {
		addr = c.peers.get(id).HTTPAddr
	}
	return addr
}

// configuration is the latest raft configuration.
func (c *Cluster) configuration() (raft.Configuration, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, raftErr(err)
	}
	return f.Configuration(), nil
}
