package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/version"
	"github.com/sovra/sovra/node/agent"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/backend/ollama"
	"github.com/sovra/sovra/node/modelshare"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/scheduler"
)

// ClusterConfig is a node's raft membership.
type ClusterConfig struct {
	// RaftAddr is raft's TCP address; empty runs the node alone.
	RaftAddr string
	// AdvertiseAddr is the host:port peers use to reach this node's HTTP
	// API; empty uses the listening address, which must then be specific.
	AdvertiseAddr   string
	Bootstrap       bool
	BootstrapExpect int
	// Join are members' HTTP API addresses, host:port or http(s) URLs.
	Join []string
	// Token is the cluster secret, for peers only: a joining node proves
	// it holds it to get its cluster certificate. Required in a cluster.
	// Operators use the management token (Config.AdminToken) instead.
	Token             string
	MaxVoters         int
	HeartbeatInterval time.Duration
	DownAfter         time.Duration
	// ResyncInterval is how often the node looks at its Ollama (models on
	// disk and loaded) to keep its replicas as placed; it also looks soon
	// after a request failed there.
	ResyncInterval time.Duration
	// LeaveOnShutdown makes a stopping node leave the cluster. Off by
	// default: a restarted member should come back without shrinking the
	// quorum in between.
	LeaveOnShutdown bool
	// CertFile, KeyFile and CAFile give the node a certificate of the
	// operator's own CA for raft and peer calls; without them the cluster
	// makes its own CA (see cluster.Config.Keyring).
	CertFile, KeyFile, CAFile string
	Labels                    map[string]string
	// GPUs overrides GPU discovery with a spec such as "8xH800:80GiB"
	// ("none" for a CPU-only node); empty discovers with nvidia-smi.
	GPUs string
	// Raft tunes raft's timings (zero keeps raft's defaults).
	Raft cluster.RaftTimings
	// Scheduling configures the scheduler the leader runs (zero fields
	// keep its defaults).
	Scheduling cluster.SchedulingConfig
}

func defaultClusterConfig() ClusterConfig {
	return ClusterConfig{MaxVoters: 3, HeartbeatInterval: time.Second, DownAfter: 10 * time.Second,
		ResyncInterval: agent.DefaultResyncInterval}
}

func (c ClusterConfig) enabled() bool { return c.RaftAddr != "" }

// contextLength is the context the scheduler sizes replicas for.
func (c ClusterConfig) contextLength() int {
	return cmp.Or(c.Scheduling.Context, scheduler.DefaultContext)
}

func (c ClusterConfig) validate() error {
	if !c.enabled() {
		if c.Bootstrap || c.BootstrapExpect > 0 || len(c.Join) > 0 {
			return errors.New("--bootstrap, --bootstrap-expect and --join need --raft-addr")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		return fmt.Errorf("raft address %q: %w", c.RaftAddr, err)
	}
	switch {
	case c.Bootstrap && c.BootstrapExpect > 0:
		return errors.New("--bootstrap and --bootstrap-expect exclude each other")
	case c.BootstrapExpect > 0 && len(c.Join) == 0:
		return errors.New("--bootstrap-expect needs --join with the other nodes' HTTP addresses")
	case c.ResyncInterval < 100*time.Millisecond:
		return fmt.Errorf("--resync-interval %v: want at least 100ms", c.ResyncInterval)
	case c.MaxVoters != 3 && c.MaxVoters != 5:
		return fmt.Errorf("--max-voters %d: want 3 or 5", c.MaxVoters)
	case c.Token == "":
		return errors.New("a cluster needs a secret: set --cluster-token-file, SOVRA_CLUSTER_TOKEN or --cluster-token (the same on every node)")
	case len(c.Token) < 16:
		return errors.New("the cluster token is too short: use at least 16 characters (e.g. openssl rand -hex 32)")
	}
	if err := allOrNone(map[string]string{"--cluster-cert": c.CertFile, "--cluster-key": c.KeyFile, "--cluster-ca": c.CAFile}); err != nil {
		return err
	}
	for _, a := range c.Join {
		if _, err := cluster.JoinAddress(a); err != nil {
			return fmt.Errorf("--join: %w", err)
		}
	}
	_, err := c.gpuOverride()
	return err
}

// joinHint says what an operator should change when the cluster refused
// this node for good.
func joinHint(err error) string {
	switch {
	case errors.Is(err, cluster.ErrBadToken):
		return "give this node the same cluster token as the members (--cluster-token-file, SOVRA_CLUSTER_TOKEN or --cluster-token)"
	case errors.Is(err, cluster.ErrMemberExists):
		return "a member holds this node's id or raft address: give this node another --node-id or --raft-addr, " +
			"or remove the old member first (POST /admin/v1/cluster/remove)"
	}
	return "check --join and the members' logs"
}

// joinFailed is closed when the cluster gives up joining (nil outside a
// cluster: never).
func (n *Node) joinFailed() <-chan struct{} {
	if n.cluster == nil {
		return nil
	}
	return n.cluster.JoinFailed()
}

// joinError is the error Run returns when this node cannot join, or
// cannot go on applying the log (its error says what to do).
func (n *Node) joinError() error {
	err := n.cluster.JoinError()
	if errors.Is(err, cluster.ErrUpgradeRequired) {
		return err
	}
	return fmt.Errorf("cannot join the cluster: %w; %s", err, joinHint(err))
}

// gpuOverride is the operator's GPU inventory, or nil to discover it.
func (c ClusterConfig) gpuOverride() ([]state.GPU, error) {
	if c.GPUs == "" {
		return nil, nil
	}
	gpus, err := agent.ParseGPUFlag(c.GPUs)
	if err != nil {
		return nil, fmt.Errorf("--gpu: %w", err)
	}
	return gpus, nil
}

// watchGPUs reports this node's GPU inventory to the cluster when it is
// first known and whenever it changes.
func (n *Node) watchGPUs(ctx context.Context) {
	override, _ := n.cfg.Cluster.gpuOverride() // checked by Validate
	inv := &agent.Inventory{
		Override: override,
		OnChange: func(gpus []state.GPU) {
			n.logGPUs(gpus, override != nil)
			n.updateSelf(func(r *registration) { r.gpus = gpus })
		},
		OnError: func(err error) { n.log.Warn("GPU discovery failed", zap.Error(err)) },
	}
	_ = inv.Run(ctx)
}

// logGPUs logs the GPU inventory; none found by discovery (no nvidia-smi,
// or it lists none) is a warning, since the scheduler places nothing on a
// node without GPUs. declared says the operator gave it with --gpu.
func (n *Node) logGPUs(gpus []state.GPU, declared bool) {
	if len(gpus) == 0 && !declared {
		n.log.Warn("no GPUs found (nvidia-smi is missing or lists none): deployments cannot be placed on this node; " +
			"declare its GPUs with --gpu, e.g. --gpu 1xA100:80GiB (--gpu none for a node meant to have none)")
		return
	}
	n.log.Info("GPU inventory", zap.Int("gpus", len(gpus)), zap.Bool("declared", declared))
}

// reconcile drives the local Ollama to this node's placements and reports
// how they stand; it also keeps the models on disk in the registration.
// It starts once the local state has caught up with the cluster.
func (n *Node) reconcile(ctx context.Context) {
	rec := &agent.Reconciler{
		NodeID:   n.cfg.NodeID,
		State:    n.cluster.Machine(),
		Reporter: n.cluster,
		Backend:  n.be,
		Logger:   n.log.Named("agent"),
		OnModels: func(models []string) { n.updateSelf(func(r *registration) { r.models = models }) },
		Sync:     func(ctx context.Context) error { return n.cluster.Read(ctx, false, func(*state.State) {}) },
		Recheck:  n.recheck,
		Pull:     n.modelPuller().Pull,
		Interval: n.cfg.Cluster.ResyncInterval,
	}
	if err := rec.Run(ctx); err != nil {
		n.log.Error("reconciler stopped", zap.Error(err))
	}
}

// registerModels reads from the local Ollama the figures of models that
// deployments name and no catalog knows, and registers them.
func (n *Node) registerModels(ctx context.Context) {
	reg := &agent.ModelRegistrar{
		NodeID:   n.cfg.NodeID,
		State:    n.cluster.Machine(),
		Proposer: n.cluster,
		Backend:  n.be,
		Catalog:  n.cluster.SchedulerOptions().Catalog,
		Logger:   n.log.Named("registrar"),
	}
	if err := reg.Run(ctx); err != nil {
		n.log.Error("model registrar stopped", zap.Error(err))
	}
}

// registration is what this node registers about itself beyond its
// configuration: its GPUs and the models on its disk, which the GPU
// watcher and the reconciler report on goroutines of their own.
type registration struct {
	mu     sync.Mutex
	gpus   []state.GPU
	models []string
}

// updateSelf changes the registration and hands it to the cluster.
func (n *Node) updateSelf(change func(*registration)) {
	n.self.mu.Lock()
	defer n.self.mu.Unlock()
	change(&n.self)
	n.cluster.SetNode(n.selfNode(n.self.gpus, n.self.models))
}

// selfNode is what this node registers about itself.
func (n *Node) selfNode(gpus []state.GPU, models []string) state.Node {
	return state.Node{Labels: n.cfg.Cluster.Labels, GPUs: gpus, Models: models, Version: version.Version}
}

// allOrNone refuses a partial set of flags, naming what is missing.
func allOrNone(flags map[string]string) error {
	var set, missing []string
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		if flags[name] != "" {
			set = append(set, name)
		} else {
			missing = append(missing, name)
		}
	}
	if len(set) > 0 && len(missing) > 0 {
		return fmt.Errorf("%s given without %s: give all of them or none", strings.Join(set, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// keyring holds the operator's certificate when one is configured;
// otherwise the cluster fills it.
func (c ClusterConfig) keyring(nodeID string) (*pki.Keyring, error) {
	keys := &pki.Keyring{}
	if c.CertFile == "" {
		return keys, nil
	}
	creds, err := pki.LoadFiles(nodeID, c.CAFile, c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster certificate: %w", err)
	}
	keys.Set(creds)
	return keys, nil
}

func (n *Node) openCluster(keys *pki.Keyring) (*cluster.Cluster, error) {
	c := n.cfg.Cluster
	adv, err := advertised(c.AdvertiseAddr, n.ln.Addr())
	if err != nil {
		return nil, err
	}
	return cluster.Open(cluster.Config{
		NodeID:            n.cfg.NodeID,
		HTTPAddr:          adv,
		RaftAddr:          c.RaftAddr,
		DataDir:           filepath.Clean(n.cfg.DataDir),
		Bootstrap:         c.Bootstrap,
		BootstrapExpect:   c.BootstrapExpect,
		Join:              c.Join,
		Token:             c.Token,
		MaxVoters:         c.MaxVoters,
		HeartbeatInterval: c.HeartbeatInterval,
		DownAfter:         c.DownAfter,
		Raft:              c.Raft,
		Scheduling:        c.Scheduling,
		Keyring:           keys,
		Node:              n.selfNode(nil, nil),
		Logger:            n.log,
	})
}

// advertised is the HTTP address peers should use.
func advertised(explicit string, bound net.Addr) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return "", fmt.Errorf("the API listens on %s, which peers cannot dial: set --advertise-addr", bound)
	}
	return net.JoinHostPort(host, port), nil
}

// forwardPath is where a node serves the Ollama-native routes to its
// peers: authenticated, served there and never forwarded again.
const forwardPath = "/internal/v1/forward"

// peerClient is the HTTP client of calls to other nodes (forwarded
// requests and load exchanges): mutual TLS with the cluster certificate.
func (n *Node) peerClient(keys *pki.Keyring) (*http.Client, string) {
	t := ollama.NewTransport()
	t.DialContext = peerDialer().DialContext
	t.TLSClientConfig = keys.ClientConfig(cluster.ServerName)
	return &http.Client{Transport: peerHeaders{base: t}}, "https"
}

// peerDialer reaches other nodes' forward routes.
func (n *Node) peerDialer(hc *http.Client, scheme string) router.PeerDialer {
	return func(peer state.Node) (backend.Backend, error) {
		return ollama.New(scheme+"://"+peer.HTTPAddr+forwardPath, hc)
	}
}

// peerHeaders carries the client's fairness key to the peer, and brings
// back how long the request queued there.
type peerHeaders struct {
	base http.RoundTripper
}

func (p peerHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	r = r.Clone(ctx)
	if key := router.MetaOf(ctx).Key; key != "" {
		r.Header.Set(api.HeaderClientKey, key)
	}
	if p, ok := auth.FromContext(ctx); ok {
		r.Header.Set(auth.HeaderPrincipal, auth.EncodePrincipal(p))
	}
	if router.MayBeSentBack(ctx) {
		r.Header.Set(api.HeaderMaySendBack, "1")
	}
	resp, err := p.base.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	d := router.DecisionOf(ctx)
	if ms, perr := strconv.ParseFloat(resp.Header.Get(api.HeaderQueueMs), 64); perr == nil {
		d.SetQueueWait(time.Duration(ms * float64(time.Millisecond)))
	}
	if code := resp.Header.Get(api.HeaderErrorCode); code != "" && resp.StatusCode >= http.StatusBadRequest {
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		d.SetPeerError(code, time.Duration(retry)*time.Second)
	}
	return resp, nil
}

// modelPuller puts models on the local Ollama for the reconciler: from
// a peer that holds them, else upstream when allowed.
func (n *Node) modelPuller() *modelshare.Puller {
	return &modelshare.Puller{
		Ollama:    n.be,
		Peers:     n.modelPeers,
		Client:    n.peerHC,
		Upstream:  n.cfg.ModelUpstream,
		RateLimit: n.cfg.ModelCopyRate,
		Logger:    n.log.Named("modelshare"),
	}
}

// modelPeers lists the ready peers whose Ollama lists the model, as this
// node's state has them.
func (n *Node) modelPeers(model string) []modelshare.Peer {
	want := agent.ModelKey(model)
	var out []modelshare.Peer
	_ = n.cluster.Read(context.Background(), true, func(s *state.State) {
		for _, p := range s.NodeList() {
			if p.ID == n.cfg.NodeID || p.Status != state.NodeReady {
				continue
			}
			if slices.ContainsFunc(p.Models, func(m string) bool { return agent.ModelKey(m) == want }) {
				out = append(out, modelshare.Peer{ID: p.ID, URL: n.peerScheme + "://" + p.HTTPAddr})
			}
		}
	})
	return out
}
