package models

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// DefaultRegistry is the host Ollama pulls library models from; names that
// spell it out resolve like the short form.
const DefaultRegistry = "registry.ollama.ai"

// name is a parsed model name: [host/][namespace/]model[:tag].
type name struct {
	host, namespace, model, tag string
}

// String returns the short form of n with its case kept: "model:tag" for
// the Ollama library, "namespace/model:tag" for other namespaces of the
// default registry, "host/namespace/model:tag" otherwise.
func (n name) String() string {
	s := n.model + ":" + n.tag
	if !strings.EqualFold(n.namespace, "library") {
		s = n.namespace + "/" + s
	}
	if !strings.EqualFold(n.host, DefaultRegistry) {
		s = n.host + "/" + s
	}
	return s
}

// key is the catalog key of n: its short form in lower case.
func (n name) key() string { return strings.ToLower(n.String()) }

// parseName splits a model name in any form Ollama accepts
// ("deepseek-r1", "deepseek-r1:70b", "library/deepseek-r1:70b",
// "registry.ollama.ai/library/deepseek-r1:70b", "user/model:tag") into its
// parts, case kept, with the defaults filled in: host registry.ollama.ai,
// namespace library, tag latest.
func parseName(s string) (name, error) {
	bad := func(why string) (name, error) {
		return name{}, fmt.Errorf("%w %q: %s", ErrInvalidName, s, why)
	}
	raw := strings.TrimSpace(s)
	for _, scheme := range []string{"https://", "http://"} {
		if len(raw) >= len(scheme) && strings.EqualFold(raw[:len(scheme)], scheme) {
			raw = raw[len(scheme):]
		}
	}
	if raw == "" {
		return bad("empty")
	}
	if strings.ContainsAny(raw, " \t\r\n\\?#@") {
		return bad("contains a character names cannot hold")
	}
	n := name{host: DefaultRegistry, namespace: "library", tag: "latest"}
	// The tag follows the last colon after the last slash; a colon before
	// a slash belongs to a host:port.
	path := raw
	if i := strings.LastIndexByte(raw, ':'); i > strings.LastIndexByte(raw, '/') {
		path, n.tag = raw[:i], raw[i+1:]
		if n.tag == "" {
			return bad("empty tag")
		}
	}
	parts := strings.Split(path, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return bad("empty or relative path part")
		}
	}
	switch len(parts) {
	case 1:
		n.model = parts[0]
	case 2:
		n.namespace, n.model = parts[0], parts[1]
	case 3:
		n.host, n.namespace, n.model = parts[0], parts[1], parts[2]
	default:
		return bad("too many path parts")
	}
	return n, nil
}

// NormalizeName returns the key the catalog finds a model name under: lower
// case, the default registry and the library namespace dropped, ":latest"
// added when there is no tag. "Registry.Ollama.ai/library/DeepSeek-R1"
// becomes "deepseek-r1:latest".
func NormalizeName(s string) (string, error) {
	n, err := parseName(s)
	if err != nil {
		return "", err
	}
	return n.key(), nil
}

// Catalog is a set of models found by name: the built-in entries plus those
// an operator registers. It is safe for concurrent use.
type Catalog struct {
	mu      sync.RWMutex
	models  map[string]*Model // by the key of their name
	names   map[string]string // every accepted key (names, aliases, family:latest) -> key of the name
	ordered []string          // keys of the names, in registration order
}

// NewCatalog returns a catalog holding the built-in entries.
func NewCatalog() *Catalog {
	c := &Catalog{models: map[string]*Model{}, names: map[string]string{}}
	for _, m := range builtinModels() {
		if err := c.add(m); err != nil {
			panic(fmt.Sprintf("models: built-in entry: %v", err))
		}
	}
	for family, tag := range defaultTags {
		target, ok := c.names[family+":"+tag]
		if !ok {
			panic(fmt.Sprintf("models: default %s:%s is not a built-in entry", family, tag))
		}
		c.names[family+":latest"] = target
	}
	return c
}

// builtin is the catalog Lookup and Builtin read; nothing registers into it.
var builtin = NewCatalog()

// Lookup finds a built-in model by any name form Ollama accepts; see
// Catalog.Lookup.
func Lookup(name string) (Model, bool) { return builtin.Lookup(name) }

// Builtin returns the built-in entries, sorted by name.
func Builtin() []Model { return builtin.Models() }

// Lookup finds a model by name, case-insensitively, in any form Ollama
// accepts: "deepseek-r1:70b", "library/deepseek-r1:70b",
// "registry.ollama.ai/library/deepseek-r1:70b", or an alias. A name without
// a tag means ":latest", which for a built-in family is the tag the Ollama
// library's latest points to (see defaultTags).
func (c *Catalog) Lookup(s string) (Model, bool) {
	n, err := parseName(s)
	if err != nil {
		return Model{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.names[n.key()]
	if !ok {
		return Model{}, false
	}
	return c.models[k].clone(), true
}

// Register adds an operator's model after validating it (see
// Model.Validate). Its name and aliases are put in short form (default
// registry and library namespace dropped, ":latest" added, case kept) and
// found case-insensitively; a name or alias
// the catalog already answers to is refused with ErrExists. Registering
// "family:latest" makes it the answer for the bare family name.
func (c *Catalog) Register(m Model) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.add(m)
}

// add indexes m under its name and aliases. The caller holds the lock or
// owns the catalog.
func (c *Catalog) add(m Model) error {
	if err := m.Validate(); err != nil {
		return err
	}
	n, _ := parseName(m.Name) // Validate parsed it
	m = m.clone()
	m.Name = n.String()
	if m.Family == "" {
		m.Family = strings.TrimSuffix(m.Name, ":"+n.tag)
	}
	keys := []string{n.key()}
	for i, a := range m.Aliases {
		an, err := parseName(a)
		if err != nil {
			return err
		}
		m.Aliases[i] = an.String()
		keys = append(keys, an.key())
	}
	for i, k := range keys {
		if _, taken := c.names[k]; taken || slices.Contains(keys[:i], k) {
			return fmt.Errorf("%w: %q", ErrExists, k)
		}
	}
	for _, k := range keys {
		c.names[k] = keys[0]
	}
	c.models[keys[0]] = &m
	c.ordered = append(c.ordered, keys[0])
	return nil
}

// Models returns every model in the catalog, sorted by name.
func (c *Catalog) Models() []Model {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Model, 0, len(c.models))
	for _, k := range c.ordered {
		out = append(out, c.models[k].clone())
	}
	slices.SortFunc(out, func(a, b Model) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	return out
}

// defaultTags maps each built-in family to the tag its ":latest" points to
// in the Ollama library (same digest), as listed on ollama.com/library/<family>.
//
// deepseek-r1's latest is 8b, which since the R1-0528 update is
// DeepSeek-R1-0528-Qwen3-8B (digest 6995872bfe4c, 5.2 GB); it was the 7b
// Qwen distill before that update. The Llama-3.1-8B distill is still
// published as deepseek-r1:8b-llama-distill-q4_K_M.
//
// mistral-small's latest moved from the 22B (2409) to the 24B (2501)
// release; it is taken to be 24b here.
var defaultTags = map[string]string{
	"deepseek-r1":   "8b",
	"deepseek-v3":   "671b",
	"mistral":       "7b",
	"mistral-nemo":  "12b",
	"mistral-small": "24b",
	"mistral-large": "123b",
	"mixtral":       "8x7b",
	"codestral":     "22b",
	"llama3.1":      "8b",
	"llama3.2":      "3b",
	"llama3.3":      "70b",
	"qwen2.5":       "7b",
	"gemma2":        "9b",
}
