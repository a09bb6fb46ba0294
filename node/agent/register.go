package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
	"github.com/sovra/sovra/node/backend"
)

// DefaultRegisterInterval is how often the registrar lists the local
// Ollama while a deployment names a model whose figures are unknown, so a
// model an operator pulls by hand is noticed within it.
const DefaultRegisterInterval = 15 * time.Second

// ModelRegistrar lets operators deploy any Ollama tag: when a deployment
// names a model that neither the catalog nor the cluster's registry knows,
// and the model is on this node's disk (it was there, or an operator
// pulled it), the registrar reads its figures from the local Ollama
// (/api/show model_info through models.FromShow, whether the embeddings
// are tied from /api/show's tensor list, the file size from /api/tags)
// and registers them with the cluster (state.RegisterModel).
// The scheduler then sizes and places the deployment.
//
// Every node that has the model may do so at about the same time: the
// registration is a create, so the first wins and the others find it
// registered. A model whose figures Ollama cannot give (FromShow refuses
// them) is tried again with exponential backoff and stays unplaced until
// an operator registers it. Fields left zero take the defaults.
type ModelRegistrar struct {
	// NodeID names this node in the registration's source.
	NodeID   string
	State    StateSource
	Proposer Reporter
	// Backend is the local Ollama.
	Backend backend.Backend
	// Catalog is what the scheduler resolves models in before the
	// registry (the built-in catalog when nil).
	Catalog *models.Catalog
	Logger  *zap.Logger
	// Interval is how often the local Ollama is listed while a model is
	// unknown (DefaultRegisterInterval).
	Interval time.Duration
	// RetryMin and RetryMax bound the backoff of a model whose figures
	// could not be read or registered (DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// CallTimeout bounds one call to Ollama or the cluster
	// (DefaultCallTimeout).
	CallTimeout time.Duration
	// Clock is the real clock when nil.
	Clock Clock
}

// regFailure is a model whose registration failed, and when to try again.
type regFailure struct {
	n       int // failures in a row
	retryAt time.Time
}

// Run registers unknown models until ctx ends; it returns nil then. It
// fails at once when a required field is unset.
func (r *ModelRegistrar) Run(ctx context.Context) error {
	if r.State == nil || r.Proposer == nil || r.Backend == nil {
		return errors.New("agent: model registrar needs a state, a proposer and a backend")
	}
	c := r.withDefaults()
	failed := map[string]*regFailure{}
	for {
		changed := c.State.Changed()
		wait := c.pass(ctx, failed)
		var timer <-chan time.Time
		if wait > 0 {
			timer = c.Clock.After(wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-timer:
		}
	}
}

func (r *ModelRegistrar) withDefaults() *ModelRegistrar {
	c := *r
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, DefaultRegisterInterval)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.CallTimeout, DefaultCallTimeout)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.Catalog == nil {
		c.Catalog = models.NewCatalog()
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return &c
}

// pass registers what it can and returns how long Run may wait for a
// change of the state before the next pass; zero waits for a change only.
func (r *ModelRegistrar) pass(ctx context.Context, failed map[string]*regFailure) time.Duration {
	unknown, index := r.unknown()
	for key := range failed {
		if _, ok := unknown[key]; !ok {
			delete(failed, key)
		}
	}
	if len(unknown) == 0 {
		return 0
	}
	disk, err := r.onDisk(ctx)
	if err != nil {
		r.Logger.Debug("cannot list the local models", zap.Error(err))
		return r.Interval
	}
	wait := r.Interval
	now := r.Clock.Now()
	for _, key := range sortedKeys(unknown) {
		m, ok := disk[key]
		if !ok {
			continue
		}
		f := failed[key]
		if f != nil && now.Before(f.retryAt) {
			wait = min(wait, f.retryAt.Sub(now))
			continue
		}
		if err := r.register(ctx, key, m, index); err != nil {
			if f == nil {
				f = &regFailure{}
				failed[key] = f
			}
			f.n++
			d := backoff(r.RetryMin, r.RetryMax, f.n)
			f.retryAt = now.Add(d)
			wait = min(wait, d)
			r.Logger.Warn("cannot register a model from Ollama", zap.String("model", key),
				zap.Int("failures", f.n), zap.Duration("retry_in", d), zap.Error(err))
			continue
		}
		delete(failed, key)
	}
	return wait
}

// unknown returns the models, by catalog key, that deployments name and
// neither the catalog nor the registry knows, with the state's index.
func (r *ModelRegistrar) unknown() (map[string]bool, uint64) {
	out := map[string]bool{}
	var index uint64
	r.State.Read(func(s *state.State) {
		index = s.Index
		for _, d := range s.Deployments {
			key, err := models.NormalizeName(d.Model)
			if err != nil || out[key] {
				continue
			}
			if _, ok := r.Catalog.Lookup(d.Model); ok || s.Models[key] != nil {
				continue
			}
			out[key] = true
		}
	})
	return out, index
}

// onDisk lists the local models by catalog key.
func (r *ModelRegistrar) onDisk(ctx context.Context) (map[string]api.ListModelResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, r.CallTimeout)
	defer cancel()
	list, err := r.Backend.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]api.ListModelResponse, len(list.Models))
	for _, m := range list.Models {
		if key, err := models.NormalizeName(listedName(m.Model, m.Name)); err == nil {
			out[key] = m
		}
	}
	return out, nil
}

// register reads a model's figures from the local Ollama and registers
// them. A model someone registered meanwhile counts as done.
func (r *ModelRegistrar) register(ctx context.Context, key string, listed api.ListModelResponse, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, r.CallTimeout)
	defer cancel()
	name := listedName(listed.Model, listed.Name)
	show, err := r.Backend.Show(ctx, &api.ShowRequest{Model: name})
	if err != nil {
		return fmt.Errorf("show %s: %w", name, err)
	}
	m, err := models.FromShowWithSize(key, show.ModelInfo, uint64(max(listed.Size, 0)))
	if err != nil {
		return err
	}
	m.TiedEmbeddings = tiedEmbeddings(show.Tensors)
	m.Source = "Ollama /api/show on node " + r.NodeID
	spec := state.SpecOf(m)
	// The key makes retries of this write safe; the index in it lets a
	// model an operator unregistered be registered again later.
	cmd := state.Command{Type: state.TypeRegisterModel, Flags: state.FlagIgnorable,
		Key:  "model:" + key + "@" + strconv.FormatUint(index, 10),
		Body: state.RegisterModel{Model: spec, Create: true}}
	_, err = r.Proposer.Apply(ctx, cmd)
	switch {
	case errors.Is(err, state.ErrExists):
		return nil
	case err != nil:
		return fmt.Errorf("register %s: %w", key, err)
	}
	r.Logger.Info("registered a model from Ollama", zap.String("model", key), zap.String("architecture", m.Architecture),
		zap.Uint64("parameters", m.Parameters), zap.Uint64("file_size", m.FileSize), zap.Int("layers", m.Layers),
		zap.Int("context_length", m.ContextLength))
	return nil
}

// tiedEmbeddings says whether a model's output projection is its token
// embedding, which model_info does not say: /api/show lists a GGUF's
// tensors, and one that ties them has token_embd.weight and no
// output.weight (llama.cpp then uses the embedding for both, and Ollama
// counts it once, as the output layer). Without a tensor list the model
// counts as untied.
func tiedEmbeddings(tensors []api.Tensor) bool {
	var embd, out bool
	for _, x := range tensors {
		switch x.Name {
		case "token_embd.weight":
			embd = true
		case "output.weight":
			out = true
		}
	}
	return embd && !out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
