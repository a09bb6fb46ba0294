package scheduler

import (
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
)

// Defaults of DefaultOptions.
const (
	// DefaultDownGrace is how long a down node keeps its replicas.
	DefaultDownGrace = 5 * time.Minute
	// DefaultHeadroom is the memory kept free on every GPU: a margin for
	// the estimate and for what else runs on the GPU.
	DefaultHeadroom = 512 << 20
	// DefaultContext is the num_ctx replicas are sized for.
	DefaultContext = 8192
)

// Options are the inputs of a scheduling run besides the state. The
// scheduler reads no clock and no environment: all of it comes in here.
type Options struct {
	// Now is the time of the run, to compare with a node's StatusSince.
	// With a zero Now every down node is within its grace.
	Now time.Time
	// DownGrace is how long a down node keeps its replicas before they
	// are placed elsewhere.
	DownGrace time.Duration
	// Headroom is kept free on every GPU, in bytes.
	Headroom uint64
	// Load says how Ollama loads the models (context, slots, KV cache
	// type, GPU overhead); its GPUs field is ignored. A zero Context is
	// the model's native context, as in models.Estimate: set it.
	Load models.EstimateOptions
	// Catalog resolves deployment models; nil is the built-in catalog.
	// Models registered in the state (state.State.Models) come after it.
	Catalog *models.Catalog
	// NoPreemption stops deployments from evicting lower-priority ones.
	NoPreemption bool

	// registered are the models registered in the state being scheduled;
	// a run sets them from its snapshot.
	registered map[string]*state.ModelSpec
}

// DefaultOptions returns the options a leader runs with unless configured
// otherwise: DefaultDownGrace, DefaultHeadroom, DefaultContext.
func DefaultOptions(now time.Time) Options {
	return Options{
		Now:       now,
		DownGrace: DefaultDownGrace,
		Headroom:  DefaultHeadroom,
		Load:      models.EstimateOptions{Context: DefaultContext},
	}
}

// lookup resolves a model name through the configured catalog, then the
// models registered in the state: the catalog wins a name both know.
func (o *Options) lookup(name string) (models.Model, bool) {
	var m models.Model
	var ok bool
	if o.Catalog != nil {
		m, ok = o.Catalog.Lookup(name)
	} else {
		m, ok = models.Lookup(name)
	}
	if ok || len(o.registered) == 0 {
		return m, ok
	}
	key, err := models.NormalizeName(name)
	if err != nil {
		return models.Model{}, false
	}
	spec := o.registered[key]
	if spec == nil {
		return models.Model{}, false
	}
	// The state validated the figures; a spec written under other rules
	// is not sized rather than sized wrong.
	if m = spec.Model(); m.Validate() != nil {
		return models.Model{}, false
	}
	return m, true
}
