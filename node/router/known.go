package router

import (
	"context"
	"sync"
	"time"
)

// otherLabel is the admission queue and metric label shared by requests
// for models this node does not know (names clients choose freely).
const otherLabel = "_other"

// Local model list refreshes: a name not found in the list refreshes it
// when it is older than localModelsTTL, waiting at most
// localModelsTimeout for the local Ollama; after a failed refresh the old
// list is kept and asked again after localModelsRetry.
const (
	localModelsTTL     = 5 * time.Second
	localModelsTimeout = time.Second
	localModelsRetry   = time.Second
)

// localModels caches the normalized names of the local Ollama's models.
type localModels struct {
	mu    sync.Mutex
	names map[string]struct{}
	at    time.Time
	// refresh is held by the one request refreshing the list; others
	// that miss wait for it and read its result.
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

// failed keeps the list and makes it stale again after localModelsRetry.
func (l *localModels) failed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = time.Now().Add(localModelsRetry - localModelsTTL)
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
// refreshing a stale list first (or waiting for the request already at
// it: a miss while another refreshes must not refuse a model the fresh
// list holds).
func (r *Router) localModel(name string) bool {
	found, stale := r.localList.has(name)
	if found || !stale {
		return found
	}
	r.localList.refresh.Lock()
	defer r.localList.refresh.Unlock()
	if found, stale = r.localList.has(name); found || !stale {
		return found // refreshed meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), localModelsTimeout)
	defer cancel()
	list, err := r.local.List(ctx)
	if err != nil {
		// Keep what the last answer said: one slow answer (a busy
		// host) must not hide every local model for localModelsTTL.
		r.localList.failed()
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
