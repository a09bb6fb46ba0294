package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
	"github.com/sovra/sovra/scheduler"
)

// catalogRoutes mounts the model catalog: the built-in entries (the
// scheduler's configured catalog) and the models registered in the
// cluster's state.
func (s *Server) catalogRoutes(a fiber.Router, cl Cluster) {
	c := catalog{cl: cl}
	a.Get("/catalog", c.list)
	a.Post("/catalog", c.register)
	// Names hold slashes ("acme/coder:7b"): the rest of the path is the name.
	a.Get("/catalog/*", c.get)
	a.Delete("/catalog/*", c.unregister)
}

// catalog serves the catalog routes over the cluster.
type catalog struct {
	cl Cluster
}

// catalogEntry is one model of the catalog with the figures that size it,
// under the names POST /admin/v1/catalog takes them.
type catalogEntry struct {
	state.ModelSpec
	Aliases []string `json:"aliases,omitempty"`
	// Builtin is set for the built-in entries; registered models, found
	// after the catalog, have their created and modified indexes.
	Builtin bool `json:"builtin"`
	// Context and MemoryBytes are the context the scheduler sizes replicas
	// for and the memory a replica needs at it.
	Context     int    `json:"context"`
	MemoryBytes uint64 `json:"memory_bytes"`
}

// modelRequest is the body of POST /admin/v1/catalog: the figures of
// state.ModelSpec. Zero KV heads mean as many as the attention heads, zero
// head sizes the embedding width over the heads, as in a GGUF.
type modelRequest struct {
	state.ModelSpec
	// Replace allows changing the figures of a registered model.
	Replace bool `json:"replace"`
}

func newCatalogEntry(spec state.ModelSpec, aliases []string, builtin bool, opts scheduler.Options) catalogEntry {
	est := models.Estimate(spec.Model(), opts.Load)
	return catalogEntry{ModelSpec: spec, Aliases: aliases, Builtin: builtin, Context: est.Context, MemoryBytes: est.Total}
}

// catalogEntryOf is an entry of the configured catalog: built in when the
// built-in catalog holds it under the same name.
func catalogEntryOf(m models.Model, opts scheduler.Options) catalogEntry {
	b, ok := models.Lookup(m.Name)
	return newCatalogEntry(state.SpecOf(m), m.Aliases, ok && b.Name == m.Name, opts)
}

func (ct catalog) list(c *fiber.Ctx) error {
	snap, err := readSnapshot(c.UserContext(), ct.cl, c.QueryBool("stale"))
	if err != nil {
		return err
	}
	opts := ct.cl.SchedulerOptions()
	list := opts.Catalog.Models()
	out := make([]catalogEntry, 0, len(list)+len(snap.Models))
	for _, m := range list {
		out = append(out, catalogEntryOf(m, opts))
	}
	for _, spec := range snap.Models {
		// The catalog wins a name both hold; the scheduler never sizes
		// such a registration.
		if _, shadowed := opts.Catalog.Lookup(spec.Name); !shadowed {
			out = append(out, newCatalogEntry(*spec, nil, false, opts))
		}
	}
	slices.SortFunc(out, func(a, b catalogEntry) int {
		return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
	})
	return c.JSON(fiber.Map{"models": out})
}

func (ct catalog) get(c *fiber.Ctx) error {
	name, key, err := catalogName(c)
	if err != nil {
		return err
	}
	opts := ct.cl.SchedulerOptions()
	if m, ok := opts.Catalog.Lookup(name); ok {
		return c.JSON(catalogEntryOf(m, opts))
	}
	var spec *state.ModelSpec
	if err := ct.cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
		if m := s.Models[key]; m != nil {
			cp := *m
			spec = &cp
		}
	}); err != nil {
		return err
	}
	if spec == nil {
		return noModel(key)
	}
	return c.JSON(newCatalogEntry(*spec, nil, false, opts))
}

// register adds a model to the cluster's registry, or with "replace"
// changes its figures. Built-in entries cannot be registered over.
func (ct catalog) register(c *fiber.Ctx) error {
	var req modelRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	spec, err := ct.spec(req.ModelSpec)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c, "register-model")
	if err != nil {
		return err
	}
	out, err := ct.cl.Apply(c.UserContext(), state.Command{Type: state.TypeRegisterModel, Flags: state.FlagIgnorable, Key: key,
		Body: state.RegisterModel{Model: spec, Create: !req.Replace}})
	if errors.Is(err, state.ErrExists) {
		return &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "exists", Param: "name",
			Message: fmt.Sprintf("model %s is registered already; send \"replace\": true to change its figures", spec.Name)}
	}
	if err != nil {
		return err
	}
	var got state.ModelSpec
	if err := json.Unmarshal(out.Value, &got); err != nil {
		return fmt.Errorf("register model outcome: %w", err)
	}
	markReplayed(c, out)
	status := http.StatusCreated
	if got.CreatedIndex != got.ModifiedIndex {
		status = http.StatusOK
	}
	return c.Status(status).JSON(newCatalogEntry(got, nil, false, ct.cl.SchedulerOptions()))
}

// spec checks a registration and returns the spec to write: the name in
// key form, the GGUF defaults filled in, the figures validated.
func (ct catalog) spec(m state.ModelSpec) (state.ModelSpec, error) {
	name := strings.TrimSpace(m.Name)
	if name == "" {
		return m, invalidParam("name", "name is required: the Ollama tag the figures are for, e.g. \"acme/coder:7b\"")
	}
	key, err := catalogKey(name)
	if err != nil {
		return m, err
	}
	if b, ok := ct.cl.SchedulerOptions().Catalog.Lookup(name); ok {
		return m, &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "builtin", Param: "name",
			Message: fmt.Sprintf("model %s is built in (as %s); its figures cannot be registered over", name, b.Name)}
	}
	m.Name, m.CreatedIndex, m.ModifiedIndex = key, 0, 0
	if m.Source == "" {
		m.Source = "operator"
	}
	if m.KVHeads == 0 {
		m.KVHeads = m.Heads
	}
	if m.Heads > 0 {
		if m.HeadDimK == 0 {
			m.HeadDimK = m.Embedding / m.Heads
		}
		if m.HeadDimV == 0 {
			m.HeadDimV = m.Embedding / m.Heads
		}
	}
	if err := m.Model().Validate(); err != nil {
		var fe *models.FieldError
		if errors.As(err, &fe) {
			return m, invalidParam(specField(fe.Field), "%s: %s", specField(fe.Field), fe.Reason)
		}
		return m, invalidParam("name", "%v", err)
	}
	return m, nil
}

// specField returns the JSON name of a models.Model field as
// state.ModelSpec spells it.
func specField(goName string) string {
	f, ok := reflect.TypeFor[state.ModelSpec]().FieldByName(goName)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func (ct catalog) unregister(c *fiber.Ctx) error {
	name, key, err := catalogName(c)
	if err != nil {
		return err
	}
	if b, ok := ct.cl.SchedulerOptions().Catalog.Lookup(name); ok {
		return &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "builtin", Param: "name",
			Message: fmt.Sprintf("model %s is built in (as %s) and cannot be removed", name, b.Name)}
	}
	idem, err := idempotencyKey(c, "unregister-model/"+key)
	if err != nil {
		return err
	}
	out, err := ct.cl.Apply(c.UserContext(), state.Command{Type: state.TypeUnregisterModel, Flags: state.FlagIgnorable, Key: idem,
		Body: state.UnregisterModel{Name: key}})
	if errors.Is(err, state.ErrNotFound) {
		return noModel(key)
	}
	if err != nil {
		return err
	}
	markReplayed(c, out)
	return c.JSON(fiber.Map{"deleted": key})
}

// catalogName reads the model name that ends the path, and its key form.
func catalogName(c *fiber.Ctx) (name, key string, err error) {
	name, err = url.PathUnescape(c.Params("*"))
	if err != nil {
		return "", "", invalidParam("name", "model name in the path: %v", err)
	}
	key, err = catalogKey(name)
	return name, key, err
}

// catalogKey is the key form of a model name, or the refusal of a name
// that is too long (without repeating it) or invalid.
func catalogKey(name string) (string, error) {
	if len(name) > MaxModelName {
		return "", invalidParam("name", "the model name is %d bytes long; at most %d are accepted", len(name), MaxModelName)
	}
	key, err := models.NormalizeName(name)
	if err != nil {
		return "", invalidParam("name", "%v", err)
	}
	return key, nil
}

func noModel(name string) *Error {
	return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Param: "name",
		Message: "model " + cut(name) + " is neither built in nor registered (GET /admin/v1/catalog lists the known models)"}
}

// modelKnown reports whether the scheduler can size model: it is in the
// configured catalog or registered in s.
func modelKnown(model string, opts scheduler.Options, s *state.State) bool {
	if _, ok := opts.Catalog.Lookup(model); ok {
		return true
	}
	return s.RegisteredModel(model) != nil
}
