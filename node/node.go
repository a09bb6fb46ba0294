// Package node is one sovra node's runtime: it wires the configuration, the
// logger, the backend adapter, the cluster membership and the HTTP API, and
// owns their start and graceful stop.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/version"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/backend/ollama"
	"github.com/sovra/sovra/node/energy"
	"github.com/sovra/sovra/node/modelshare"
	"github.com/sovra/sovra/node/quota"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/node/router/balance"
	"github.com/sovra/sovra/node/router/load"
	"github.com/sovra/sovra/node/ui"
	"github.com/sovra/sovra/node/usage"
)

// Config is what a node needs to run.
type Config struct {
	NodeID    string
	DataDir   string
	HTTPAddr  string
	OllamaURL string
	// OllamaModels is the local Ollama's models directory: the node
	// serves the models in it to its peers (package modelshare). Empty:
	// Ollama's default ($OLLAMA_MODELS, else ~/.ollama/models).
	OllamaModels string
	// ModelUpstream lets the node's Ollama pull a model from Ollama's own
	// registry when no peer holds it; off in an air-gapped site.
	ModelUpstream bool
	// ModelCopyRate bounds the bytes per second of one copy of a model
	// from a peer (0: no bound).
	ModelCopyRate int64
	// MaxBodyBytes is the largest request body accepted.
	MaxBodyBytes int
	// ShutdownGrace is how long in-flight requests may run after a stop
	// signal before they are cancelled.
	ShutdownGrace time.Duration
	ReadTimeout   time.Duration
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
	// TLSCertFile and TLSKeyFile make the API serve TLS to its clients
	// with the operator's certificate (its own PKI, or ACME-issued
	// elsewhere), read again when the files change or on ReloadTLS.
	// Cluster peers are served the cluster certificate on the same port
	// whatever this says.
	TLSCertFile, TLSKeyFile string
	// WakeWait bounds how long a request for an idle (or waking)
	// deployment waits for a ready replica before it is answered 503 with
	// the loading progress; zero answers at once.
	WakeWait time.Duration
	// Clock is the wall clock this node records uses of deployments with
	// (time.Now); tests skew it to show a node's clock cannot unload a
	// busy deployment.
	Clock func() time.Time
	// ServeUndeployed lets clients use models that no deployment names,
	// from the local Ollama; otherwise they are refused (404). A node
	// without a cluster has no deployments, so it serves nothing without
	// it. Ollama's cloud models are refused either way.
	ServeUndeployed bool
	// Cluster configures raft membership; a node without a raft address
	// serves alone.
	Cluster ClusterConfig
	// Routing configures how requests are queued and routed.
	Routing RoutingConfig
	// AdminToken is the management token operators send as a bearer token
	// on /admin/v1 and the inference routes. Empty: the node reads the one
	// it made earlier from <DataDir>/admin-token, or makes one there.
	AdminToken string
	// Keys, when set, holds API keys beside the management token.
	Keys auth.KeyStore
	// AllowedOrigins are the browser origins, beyond loopback ones, whose
	// pages may call the API ("https://ui.example.com", "https://*.example.com").
	AllowedOrigins []string
	// Auth is "on" (default) or "off": off admits requests without a
	// credential on the inference routes, for a trusted network.
	Auth string
	// Limits bound what a client may make the node hold.
	Limits LimitsConfig
	// Audit configures the audit log and the keys' last-use reports.
	Audit AuditConfig
	// Usage configures usage accounting (quota.go).
	Usage UsageConfig
	// Energy configures energy accounting (energy.go).
	Energy EnergyConfig
}

// RoutingConfig configures admission and load-aware routing.
type RoutingConfig struct {
	// Policy is ttf (estimated time to finish, with prefix affinity),
	// round-robin or least-connections.
	Policy string
	// Slots is how many generations of one model the local Ollama runs at
	// once (its OLLAMA_NUM_PARALLEL).
	Slots int
	// MaxQueue bounds the requests waiting for a slot, per model.
	MaxQueue int
	// QueueTimeout bounds a request's wait for a slot.
	QueueTimeout time.Duration
	// AffinityFactor: a follow-up turn goes to the replica that holds its
	// conversation while that replica's load is at most this times the
	// average (by capacity); below 1 turns affinity off.
	AffinityFactor float64
	// LoadInterval is how often the node looks for a change in its own
	// load to push to its peers (at most one frame per interval).
	LoadInterval time.Duration
}

func defaultRoutingConfig() RoutingConfig {
	return RoutingConfig{Policy: string(balance.TimeToFinish), Slots: router.DefaultSlots, MaxQueue: router.DefaultMaxQueue,
		QueueTimeout: router.DefaultQueueTimeout, AffinityFactor: balance.DefaultFactor, LoadInterval: load.DefaultInterval}
}

func (c RoutingConfig) validate() error {
	if _, err := balance.ParsePolicy(c.Policy); err != nil {
		return err
	}
	switch {
	case c.Slots < 1:
		return errors.New("slots must be at least 1")
	case c.MaxQueue < 0:
		return errors.New("queue size must not be negative")
	case c.QueueTimeout <= 0:
		return errors.New("queue timeout must be positive")
	case c.LoadInterval < 10*time.Millisecond || c.LoadInterval > load.DefaultStaleAfter/2:
		return fmt.Errorf("load interval must be between 10ms and %v", load.DefaultStaleAfter/2)
	}
	return nil
}

func (c RoutingConfig) router(reg prometheus.Registerer, view *load.View) router.Config {
	p, _ := balance.ParsePolicy(c.Policy)
	factor := c.AffinityFactor
	if factor == 0 {
		factor = -1 // zero means off here, not the default
	}
	queue := c.MaxQueue
	if queue == 0 {
		queue = -1 // zero means none may wait here, not the default
	}
	return router.Config{Policy: p, AffinityFactor: factor, Slots: c.Slots, MaxQueue: queue,
		QueueTimeout: c.QueueTimeout, View: view, Registerer: reg}
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() Config {
	hc := api.DefaultConfig()
	return Config{
		HTTPAddr:      "127.0.0.1:8080",
		Auth:          AuthOn,
		OllamaURL:     "http://127.0.0.1:11434",
		ModelUpstream: true,
		DataDir:       "./sovra-data",
		MaxBodyBytes:  hc.BodyLimit,
		ShutdownGrace: 30 * time.Second,
		ReadTimeout:   hc.ReadTimeout,
		WriteTimeout:  hc.WriteTimeout,
		IdleTimeout:   hc.IdleTimeout,
		WakeWait:      60 * time.Second,
		Cluster:       defaultClusterConfig(),
		Routing:       defaultRoutingConfig(),
		Limits:        defaultLimitsConfig(),
		Audit:         defaultAuditConfig(),
	}
}

// AuthOn and AuthOff are the values of Config.Auth.
const (
	AuthOn  = "on"
	AuthOff = "off"
)

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("node id is empty: set --node-id")
	case c.HTTPAddr == "":
		return errors.New("http address is empty: set --http-addr")
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("max body size %d is too small (at least 1024 bytes)", c.MaxBodyBytes)
	case c.ShutdownGrace < 0:
		return errors.New("shutdown grace must not be negative")
	case c.WakeWait < 0:
		return errors.New("wake wait must not be negative")
	case c.Auth != "" && c.Auth != AuthOn && c.Auth != AuthOff:
		return fmt.Errorf("--auth %.32q: want on or off", c.Auth)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("http address %q: %w", c.HTTPAddr, err)
	}
	if err := allOrNone(map[string]string{"--tls-cert": c.TLSCertFile, "--tls-key": c.TLSKeyFile}); err != nil {
		return err
	}
	if err := c.Routing.validate(); err != nil {
		return err
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if err := c.Audit.validate(); err != nil {
		return err
	}
	return c.Cluster.validate()
}

// Node is a running sovra node.
type Node struct {
	cfg     Config
	log     *zap.Logger
	be      backend.Backend
	api     *api.Server
	cluster *cluster.Cluster
	router  *router.Router
	// energy measures joules per output token (energy.go; nil outside
	// a cluster or when turned off).
	energy *energy.Sampler
	// peerHC and peerScheme reach other nodes (forwards, load exchanges).
	peerHC     *http.Client
	peerScheme string
	self       registration
	// recheck carries the router's word of a local failure to the
	// reconciler, which looks at Ollama again.
	recheck chan struct{}
	ln      net.Listener
	public  *pki.FileCert // the API's own certificate, or nil
	keys    *pki.Keyring  // the cluster certificate, or nil outside a cluster
	// adminToken is the management token in force.
	adminToken string
	done       chan error
	// stopWatch ends the watch of the public certificate's files.
	stopWatch context.CancelFunc
	stopRun   context.CancelFunc
	runWG     sync.WaitGroup

	stopOnce sync.Once
	stopErr  error

	// stateKeys are the API keys of the replicated state (nil outside
	// a cluster).
	stateKeys *auth.StateKeys
	// quota enforces the keys' limits cluster-wide (quota.go).
	quota *quota.Limiter
	usage *usage.Recorder
	// dashboard is the web dashboard (nil outside a cluster).
	dashboard *ui.UI
	// feed publishes this node's load to its peers (load.go).
	feed *load.Feed
}

// New builds a node over the Ollama at cfg.OllamaURL.
func New(cfg Config, log *zap.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	be, err := ollama.New(cfg.OllamaURL, &http.Client{Transport: ollama.NewTransport()})
	if err != nil {
		return nil, err
	}
	return NewWithBackend(cfg, be, log), nil
}

// NewWithBackend builds a node over any backend (tests use this seam).
func NewWithBackend(cfg Config, be backend.Backend, log *zap.Logger) *Node {
	return &Node{cfg: cfg, log: log.With(zap.String("node", cfg.NodeID)), be: be, done: make(chan error, 1),
		recheck: make(chan struct{}, 1)}
}

// localFailed asks the reconciler to look at Ollama again; it never
// blocks, and asks made before the reconciler takes one are one ask.
func (n *Node) localFailed() {
	select {
	case n.recheck <- struct{}{}:
	default:
	}
}

// Start listens on the HTTP address, joins or forms the cluster when one is
// configured, and serves in the background.
func (n *Node) Start() error {
	if err := n.loadAdminToken(); err != nil {
		return err
	}
	if err := n.loadCerts(); err != nil {
		return err
	}
	ln, err := listen(n.cfg.HTTPAddr, listenerConfig{keys: n.keys, public: n.public})
	if err != nil {
		return err
	}
	n.ln = ln
	n.watchPublicCert()
	var cl api.Cluster
	reg := prometheus.NewRegistry()
	rcfg := n.cfg.Routing.router(reg, load.NewView(load.ViewConfig{}))
	rcfg.LocalFailed = n.localFailed
	rcfg.ServeUndeployed, rcfg.ContextLength = n.cfg.ServeUndeployed, n.cfg.Cluster.contextLength()
	if n.cfg.Cluster.enabled() {
		if n.cluster, err = n.openCluster(n.keys); err != nil {
			ln.Close()
			n.stopWatch()
			return err
		}
		cl = n.cluster
		n.peerHC, n.peerScheme = n.peerClient(n.keys)
		n.router = router.New(n.cfg.NodeID, n.localBackend(reg), n.cluster.Machine(), n.peerDialer(n.peerHC, n.peerScheme)).
			WithConfig(rcfg).WithWake(router.WakeConfig{Proposer: n.cluster, Wait: n.cfg.WakeWait, Now: n.cfg.Clock, OnError: n.wakeFailed})
	} else {
		n.router = router.New(n.cfg.NodeID, n.be, nil, nil).WithConfig(rcfg)
	}
	apiCfg := n.apiConfig(isLoopback(ln.Addr()))
	apiCfg.Registry = reg
	if n.cluster != nil {
		apiCfg.DashboardPath = ui.Path
		n.loadFeed(&apiCfg)
	}
	n.api = api.New(apiCfg, n.router, cl, n.log.Named("http"))
	if n.cluster != nil {
		n.mountDashboard()
	}
	go func() { n.done <- n.api.Serve(ln) }()
	if n.cluster != nil {
		n.runCluster()
	}
	if n.cfg.Auth == AuthOff {
		n.log.Warn("AUTHENTICATION IS OFF on /v1 and /api (--auth=off): anyone who reaches " + ln.Addr().String() +
			" may use every model this cluster serves; keys given are still checked, admin routes still need the management token")
	}
	n.log.Info("serving", zap.String("http_addr", ln.Addr().String()), zap.String("ollama", n.cfg.OllamaURL),
		zap.String("version", version.Version), zap.Bool("clustered", n.cluster != nil))
	return nil
}

// apiConfig is the API's configuration; loopback says the API listens
// on a loopback address only.
func (n *Node) apiConfig(loopback bool) api.Config {
	cfg := api.Config{
		BodyLimit:      n.cfg.MaxBodyBytes,
		ReadTimeout:    n.cfg.ReadTimeout,
		WriteTimeout:   n.cfg.WriteTimeout,
		IdleTimeout:    n.cfg.IdleTimeout,
		Version:        version.Version,
		AdminToken:     n.adminToken,
		Keys:           n.cfg.Keys,
		AllowedOrigins: n.cfg.AllowedOrigins,
		OpenInference:  n.cfg.Auth == AuthOff,
		LoopbackOnly:   loopback,
	}
	if n.keys != nil {
		cfg.PeerID = n.keys.ConnPeerID
	}
	if n.cluster != nil {
		cfg.Ready = n.cluster.Ready
		cfg.ModelRegistry = modelshare.NewRegistry(modelshare.ModelsDir(n.cfg.OllamaModels))
	}
	n.cfg.Limits.apply(&cfg)
	n.keyConfig(&cfg)
	n.quotaConfig(&cfg)
	return cfg
}

// loadCerts reads the API's own certificate and, in a cluster, the
// operator's cluster certificate when configured.
func (n *Node) loadCerts() error {
	if n.cfg.TLSCertFile != "" {
		fc, err := pki.LoadFileCert(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert: %w", err)
		}
		n.public = fc
	}
	if !n.cfg.Cluster.enabled() {
		return nil
	}
	keys, err := n.cfg.Cluster.keyring(n.cfg.NodeID)
	if err != nil {
		return err
	}
	n.keys = keys
	return nil
}

// certWatchInterval is how often the API's certificate files are checked
// for a change.
const certWatchInterval = 5 * time.Second

func (n *Node) watchPublicCert() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stopWatch = cancel
	if n.public == nil {
		return
	}
	go n.public.Watch(ctx, certWatchInterval, n.certReloaded)
}

func (n *Node) certReloaded(err error) {
	if err != nil {
		n.log.Error("could not reload the API certificate; still serving the previous one", zap.Error(err))
		return
	}
	n.log.Info("reloaded the API certificate", zap.String("file", n.cfg.TLSCertFile))
}

// ReloadTLS reads the API's certificate files again (on SIGHUP).
func (n *Node) ReloadTLS() {
	if n.public != nil {
		n.certReloaded(n.public.Reload())
	}
}

func (n *Node) runCluster() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stopRun = cancel
	n.runWG.Add(5)
	go func() {
		defer n.runWG.Done()
		n.shareLoad(ctx)
	}()
	go func() {
		defer n.runWG.Done()
		if err := n.cluster.Run(ctx); err != nil {
			n.log.Error("cluster stopped", zap.Error(err))
		}
	}()
	go func() {
		defer n.runWG.Done()
		n.watchGPUs(ctx)
	}()
	go func() {
		defer n.runWG.Done()
		n.reconcile(ctx)
	}()
	go func() {
		defer n.runWG.Done()
		n.registerModels(ctx)
	}()
	n.runKeys(ctx)
	n.runUsage(ctx)
	n.runEnergy(ctx)
}

// Addr is the address the API listens on (useful with port 0).
func (n *Node) Addr() string { return n.ln.Addr().String() }

// RaftAddr is the node's raft address ("" outside a cluster).
func (n *Node) RaftAddr() string {
	if n.cluster == nil {
		return ""
	}
	return n.cluster.RaftAddr()
}

// URL is the base URL of the API.
func (n *Node) URL() string {
	if n.public != nil {
		return "https://" + n.Addr()
	}
	return "http://" + n.Addr()
}

// Router routes the node's inference requests.
func (n *Node) Router() *router.Router { return n.router }

// Cluster is the node's cluster membership, or nil when it serves alone.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// Stop stops accepting requests and waits up to the shutdown grace for
// in-flight ones; then it cancels what is left, leaves the cluster when
// configured to, and closes raft. Later calls return the first one's result.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { n.stopErr = n.stop(ctx) })
	return n.stopErr
}

func (n *Node) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownGrace)
	defer cancel()
	n.log.Info("shutting down", zap.Duration("grace", n.cfg.ShutdownGrace))
	n.stopWatch()
	n.closeDashboard()
	err := n.api.Shutdown(ctx)
	if serr := <-n.done; serr != nil && err == nil {
		err = serr
	}
	if n.cluster != nil {
		err = errors.Join(err, n.stopCluster())
	}
	return err
}

func (n *Node) stopCluster() error {
	var err error
	n.flushOnStop()
	if n.cfg.Cluster.LeaveOnShutdown {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if lerr := n.cluster.Leave(ctx); lerr != nil {
			n.log.Warn("could not leave the cluster", zap.Error(lerr))
		}
		cancel()
	}
	n.stopRun()
	n.runWG.Wait()
	n.router.Close()
	if cerr := n.cluster.Close(); cerr != nil {
		err = fmt.Errorf("close cluster: %w", cerr)
	}
	return err
}

// Run starts the node and stops it when ctx ends, or with an error saying
// what to fix when the cluster refuses it for good (a wrong token, a
// taken id).
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-n.done:
		n.done <- err
	case <-n.joinFailed():
		return errors.Join(n.joinError(), n.Stop(context.Background()))
	}
	return n.Stop(context.Background())
}

// wakeFailed logs a use record or wake the router could not write.
func (n *Node) wakeFailed(what, deployment string, err error) {
	n.log.Warn("could not record the use of a deployment", zap.String("what", what),
		zap.String("deployment", deployment), zap.Error(err))
}
