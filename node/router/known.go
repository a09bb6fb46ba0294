package router

import (
	"context"
	"sync"
	"time"
)

// otherLabel is the admission queue and metric label shared by requests
// for models this node does not know (names clients choose freely).
const otherLabel = "_other"

// Local model list refreshes: a name not found in the list may refresh it
// when it is older than localModelsTTL, waiting at most
// localModelsTimeout for the local Ollama.
const (
	localModelsTTL     = 5 * time.Second
	localModelsTimeout = time.Second
)

// localModels caches the normalized names of the local Ollama's models.
type localModels struct {
	mu    sync.Mutex
	names map[string]struct{}
	at    time.Time
	// refresh is held by the one request refreshing the list; the others
	// use the list as it is.
	refresh sync.Mutex
}

func (l *localModels) has(name string) (found, stale bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, found = l.names[name]
	return found, time.Since(l.at) > localModelsTTL
}

func (l *localModels) set(names map[string]struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names, l.at = names, time.Now()
}

// Known says whether model names something this node serves or may
// serve: a deployment (by name or model) in the cluster state, or a model
// of the local Ollama. Only known models get admission queues and metric
// labels of their own.
func (r *Router) Known(model string) bool {
	name := normalize(model)
	return r.deployed(name) || r.localModel(name)
}

// Label is the metric label of a requested model: its normalized name
// when it is known, else "_other".
func (r *Router) Label(model string) string { return r.label(model) }

// label is the normalized model name when it is known, else otherLabel.
func (r *Router) label(model string) string {
	name := normalize(model)
	if r.deployed(model) || r.localModel(name) {
		return name
	}
	return otherLabel
}

// localModel says whether the local Ollama has the normalized name,
// refreshing a stale list first unless another request is at it.
func (r *Router) localModel(name string) bool {
	found, stale := r.localList.has(name)
	if found || !stale || !r.localList.refresh.TryLock() {
		return found
	}
	defer r.localList.refresh.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), localModelsTimeout)
	defer cancel()
	list, err := r.local.List(ctx)
	if err != nil {
		// Keep what the last answer said, and ask again next time: one
		// slow answer (a busy host) must not hide every local model for
		// localModelsTTL.
		return found
	}
	names := map[string]struct{}{}
	for _, m := range list.Models {
		names[normalize(m.Name)] = struct{}{}
		names[normalize(m.Model)] = struct{}{}
	}
	r.localList.set(names)
	_, found = names[name]
	return found
}
