// Package modelshare lets a node's Ollama take a model from a peer's
// Ollama instead of the internet. Each node serves the models on its
// Ollama's disk, read-only, over the registry protocol `ollama pull`
// speaks (Registry), on the authenticated peer channel. A node asked to
// place a model that a peer holds runs a registry on loopback for its own
// Ollama that relays to that peer over mutual TLS (relay), has its Ollama
// pull the model from it (digests verified by Ollama), then names it as
// the model asked for (Puller). It falls back to Ollama's upstream
// registry only where the operator allows it.
package modelshare

import (
	"fmt"
	"regexp"
	"strings"
)

// model is a model's name split as a registry path holds it.
type model struct {
	namespace, name, tag string
}

// part is what each of namespace, name and tag may hold: no path
// separators, no dot-dot.
var part = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// parseModel splits "name[:tag]" or "namespace/name[:tag]" (the names
// Ollama lists for models of its default registry); the tag defaults to
// latest and the namespace to library.
func parseModel(s string) (model, error) {
	m := model{namespace: "library", tag: "latest"}
	rest := s
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		rest, m.tag = rest[:i], rest[i+1:]
	}
	switch parts := strings.Split(rest, "/"); len(parts) {
	case 1:
		m.name = parts[0]
	case 2:
		m.namespace, m.name = parts[0], parts[1]
	default:
		return m, fmt.Errorf("model name %q: a peer copy takes name[:tag] or namespace/name[:tag]", s)
	}
	for _, p := range []string{m.namespace, m.name, m.tag} {
		if !part.MatchString(p) || strings.Contains(p, "..") {
			return m, fmt.Errorf("model name %q: %q is not a valid name part", s, p)
		}
	}
	return m, nil
}

// String is the name as Ollama lists it.
func (m model) String() string {
	if m.namespace == "library" {
		return m.name + ":" + m.tag
	}
	return m.namespace + "/" + m.name + ":" + m.tag
}

// repo is the registry path of the model's repository.
func (m model) repo() string { return m.namespace + "/" + m.name }

// digestPattern is a blob's digest in a registry path.
var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
