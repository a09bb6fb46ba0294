package router

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovra/sovra/node/router/admit"
	"github.com/sovra/sovra/node/router/balance"
	"github.com/sovra/sovra/node/router/load"
)

// Config configures load-aware routing. Zero fields take the defaults.
type Config struct {
	// Policy chooses among replicas (balance.TimeToFinish by default).
	Policy balance.Policy
	// AffinityFactor bounds prefix affinity (balance.DefaultFactor; below
	// 1 turns it off).
	AffinityFactor float64
	// Slots is how many generations of one model the local Ollama runs at
	// once (its OLLAMA_NUM_PARALLEL).
	Slots int
	// MaxQueue bounds the requests waiting for a slot, per model
	// (DefaultMaxQueue when 0; negative: none may wait).
	MaxQueue int
	// QueueTimeout bounds a request's wait for a slot.
	QueueTimeout time.Duration
	// Retries is how many other replicas a request may try before its
	// first byte (DefaultRetries; negative: none).
	Retries int
	// RetryBudget: no retry starts later than this after the request did.
	RetryBudget time.Duration
	// View holds the peers' load (a fresh one when nil).
	View *load.View
	// Registerer, when set, receives the routing metrics.
	Registerer prometheus.Registerer
	// LocalFailed, when set, is called after a request failed on the local
	// Ollama through the replica's fault (not a cancellation, a bad request
	// or a refusal for load), so that the node re-checks its Ollama. It
	// must not block.
	LocalFailed func()
	// ServeUndeployed lets clients use models that no deployment names,
	// from the local Ollama (see policy.go); cloud models stay refused.
	ServeUndeployed bool
	// ContextLength is the context replicas are sized for: a request's
	// num_ctx above it is refused (0: no bound). num_ctx is never passed
	// on either way.
	ContextLength int
}

// Defaults.
const (
	DefaultSlots        = 1
	DefaultMaxQueue     = 64
	DefaultQueueTimeout = 30 * time.Second
	DefaultRetries      = 2
	DefaultRetryBudget  = 10 * time.Second
	// QueueIdleExpiry is how long a model's admission queue outlives its
	// last request when nothing runs or waits in it.
	QueueIdleExpiry = 10 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.Policy == "" {
		c.Policy = balance.TimeToFinish
	}
	if c.Slots <= 0 {
		c.Slots = DefaultSlots
	}
	switch {
	case c.MaxQueue == 0:
		c.MaxQueue = DefaultMaxQueue
	case c.MaxQueue < 0:
		c.MaxQueue = 0
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.RetryBudget <= 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.View == nil {
		c.View = load.NewView(load.ViewConfig{})
	}
	return c
}

// WithConfig sets the routing configuration; call it before serving.
func (r *Router) WithConfig(cfg Config) *Router {
	cfg = cfg.withDefaults()
	r.cfg = cfg
	r.bal = balance.New(balance.Config{Policy: cfg.Policy, Factor: cfg.AffinityFactor})
	r.queues = admit.NewGroup(admit.Config{Slots: cfg.Slots, MaxQueue: max(0, cfg.MaxQueue), Timeout: cfg.QueueTimeout,
		IdleExpiry: QueueIdleExpiry, Changed: r.loadChanged})
	r.tracker = load.NewTracker(0)
	r.met = newMetrics(r)
	r.breakers = newBreakers(r.met)
	if cfg.Registerer != nil {
		r.met.register(cfg.Registerer)
	}
	return r
}

// View is the peers' load this router routes by.
func (r *Router) View() *load.View { return r.cfg.View }
