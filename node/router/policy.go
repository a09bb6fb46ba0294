package router

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
	ollamamodel "github.com/ollama/ollama/types/model"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
)

// What clients may ask of the backend. The cluster owns where models run
// and how they are loaded; a client only chooses a served model and how
// its answer is sampled. Every inference request (chat, completion,
// embedding, and a model's description) is vetted here before it is
// routed, and again on the node a request is forwarded to:
//
//   - the model must be named by a deployment in the cluster state, unless
//     the node serves undeployed models (Config.ServeUndeployed); Ollama's
//     cloud models, which send prompts to a third party, are refused even
//     then (ErrModelNotServed); a name that no deployment has and that
//     Ollama's own parser refuses is refused either way
//     (ErrInvalidModelName), since it would reach Ollama as it is;
//   - the options must be on the sampling allowlist (ErrOptionRefused):
//     options that decide how a model is loaded (num_gpu, num_batch, ...)
//     and unknown ones are refused; num_ctx is accepted up to the context
//     length replicas are sized for and never passed on, since Ollama
//     reloads a model whose num_ctx changes; num_predict is accepted up
//     to that context length too;
//   - the client's keep_alive is never passed on: a request served from a
//     replica placed on this node carries backend.PinKeepAlive, the
//     keep_alive the agent pins it with, and any other request carries
//     none, which leaves a loaded model as it is.

// Sentinel errors of the policy.
var (
	// ErrModelNotServed: the request names a model that no deployment
	// names while the node serves no undeployed models, or an Ollama
	// cloud model. A *ModelError is one.
	ErrModelNotServed = errors.New("model not served")
	// ErrCloudModel: the request names an Ollama cloud model, which this
	// cluster never serves. A *ModelError for a cloud model is one, and
	// also ErrModelNotServed.
	ErrCloudModel = errors.New("cloud models are not served")
	// ErrOptionRefused: the request sets an option clients may not set.
	// An *OptionError is one.
	ErrOptionRefused = errors.New("option refused")
	// ErrInvalidModelName: the request names a model by a name that no
	// deployment has and that Ollama's naming rules refuse (Ollama would
	// fail such a request, on some routes with a server error). A
	// *ModelError for such a name is one, and also ErrModelNotServed.
	ErrInvalidModelName = errors.New("invalid model name")
)

// ModelError is a request for a model this node does not serve.
type ModelError struct {
	// Model is the name asked for, cut to a short prefix.
	Model string
	// Cloud: the name is an Ollama cloud model's.
	Cloud bool
	// Invalid: the name is not valid by Ollama's naming rules.
	Invalid bool
}

func (e *ModelError) Error() string {
	if e.Invalid {
		return fmt.Sprintf("%q is not a valid model name: a name is [host/][namespace/]model[:tag] of letters, digits, '_', '-' and '.'", e.Model)
	}
	if e.Cloud {
		return fmt.Sprintf("model %q is an Ollama cloud model; this cluster does not serve cloud models", e.Model)
	}
	return fmt.Sprintf("model %q is not served by this cluster (no deployment names it)", e.Model)
}

// Is makes errors.Is(err, ErrModelNotServed) hold, ErrCloudModel for a
// cloud model and ErrInvalidModelName for an invalid name.
func (e *ModelError) Is(target error) bool {
	return target == ErrModelNotServed || (e.Cloud && target == ErrCloudModel) || (e.Invalid && target == ErrInvalidModelName)
}

// OptionError is a request that sets an option clients may not set, or
// an allowed option to a value of the wrong kind.
type OptionError struct {
	// Option is the option's name (a key of the request's options).
	Option string
	// Reason says why it is refused.
	Reason string
	// Invalid says the option is allowed but its value is not: Ollama
	// would fail the request with a server error.
	Invalid bool
}

func (e *OptionError) Error() string {
	if e.Invalid {
		return fmt.Sprintf("option %q is invalid: %s", e.Option, e.Reason)
	}
	return fmt.Sprintf("option %q is not allowed: %s", e.Option, e.Reason)
}

// Is makes errors.Is(err, ErrOptionRefused) hold.
func (e *OptionError) Is(target error) bool { return target == ErrOptionRefused }

// SamplingOptions are the options a client may set: they change how one
// answer is sampled, not how or where the model is loaded.
var SamplingOptions = []string{
	"num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p",
	"repeat_last_n", "temperature", "repeat_penalty", "presence_penalty",
	"frequency_penalty", "stop",
}

// LoadOptions are the options that decide how Ollama loads a model (its
// Runner options, and older ones it no longer reads). They are refused
// with a reason that says so; num_ctx is handled apart.
var LoadOptions = []string{
	"num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread",
	"low_vram", "f16_kv", "vocab_only", "use_mlock", "numa", "logits_all",
}

var (
	samplingSet = toSet(SamplingOptions)
	loadSet     = toSet(LoadOptions)
)

func toSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// maxNameEcho is how much of a refused model's name an error repeats.
const maxNameEcho = 48

// shortName is the start of name, at most maxNameEcho bytes of whole
// runes, marked when cut.
func shortName(name string) string {
	if len(name) <= maxNameEcho {
		return name
	}
	cut := maxNameEcho
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut] + "..."
}

// IsCloudModel reports whether name is an Ollama cloud model's: its tag
// is "cloud" or ends in "-cloud" (gpt-oss:120b-cloud, glm-4.6:cloud).
func IsCloudModel(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if i := strings.IndexByte(n, '@'); i >= 0 {
		n = n[:i] // a digest
	}
	_, tag, ok := strings.Cut(n[strings.LastIndexByte(n, '/')+1:], ":")
	return ok && (tag == "cloud" || strings.HasSuffix(tag, "-cloud"))
}

// vetModel checks that this node serves model. A deployment's name need
// not be an Ollama name (the router asks Ollama for its tag); any other
// name reaches Ollama as it is, so it must be valid by Ollama's rules.
func (r *Router) vetModel(model string) error {
	switch {
	case IsCloudModel(model):
		return &ModelError{Model: shortName(model), Cloud: true}
	case r.deployed(model):
		return nil
	case !ValidModelName(model):
		return &ModelError{Model: shortName(model), Invalid: true}
	case r.cfg.ServeUndeployed:
		return nil
	}
	return &ModelError{Model: shortName(model)}
}

// ValidModelName reports whether Ollama accepts name as a model's name,
// by Ollama's own parser.
func ValidModelName(name string) bool {
	if _, ok := validNames.Load(name); ok {
		return true
	}
	if !ollamamodel.ParseName(name).IsValid() {
		return false
	}
	if validNameCount.Add(1) <= maxValidNames {
		validNames.Store(strings.Clone(name), struct{}{})
	}
	return true
}

// validNames remembers names found valid (parsing one costs about a
// microsecond, on every request for a model not deployed), up to
// maxValidNames of them: clients choose the names.
var (
	validNames     sync.Map
	validNameCount atomic.Int64
)

const maxValidNames = 4096

// ContextLength is the context replicas are sized for (0: unknown): a
// request can generate no more tokens than that.
func (r *Router) ContextLength() int { return r.cfg.ContextLength }

// deployed reports whether a deployment in the state names model, by its
// name or its Ollama tag.
func (r *Router) deployed(model string) bool {
	if r.state == nil {
		return false
	}
	found := false
	r.state.Read(func(s *state.State) {
		for _, d := range s.Deployments {
			if deploymentIs(d, model) {
				found = true
				return
			}
		}
	})
	return found
}

// deploymentIs reports whether model names d, by its name or its model
// (as match reads names), normalized alike.
func deploymentIs(d *state.Deployment, model string) bool {
	n := normalize(model)
	return d.Name == model || normalize(d.Name) == n || normalize(d.Model) == n
}

// vet checks a request's model and options and returns the options to
// pass on.
func (r *Router) vet(model string, opts map[string]any) (map[string]any, error) {
	if err := r.vetModel(model); err != nil {
		return nil, err
	}
	return r.vetOptions(opts)
}

// vetOptions returns the options without num_ctx, or the first refused
// one (in name order, so the answer does not vary).
func (r *Router) vetOptions(opts map[string]any) (map[string]any, error) {
	if len(opts) == 0 {
		return opts, nil
	}
	ok := true
	for k, v := range opts {
		ok = ok && r.vetOption(k, v) == nil
	}
	if !ok {
		for _, k := range slices.Sorted(maps.Keys(opts)) {
			if err := r.vetOption(k, opts[k]); err != nil {
				return nil, err
			}
		}
	}
	if _, ok := opts["num_ctx"]; !ok {
		return opts, nil // the common case: nothing to take out
	}
	out := maps.Clone(opts)
	delete(out, "num_ctx")
	return out, nil
}

func (r *Router) vetOption(k string, v any) *OptionError {
	switch {
	case k == "num_predict":
		return r.vetNumPredict(v)
	case samplingSet[k]:
		return vetSampling(k, v)
	case k == "num_ctx":
		return r.vetNumCtx(v)
	case loadSet[k]:
		return &OptionError{Option: k, Reason: "it sets how the model is loaded, which the cluster decides"}
	}
	return &OptionError{Option: shortName(k), Reason: "unknown option; the sampling options allowed are " + strings.Join(SamplingOptions, ", ")}
}

// vetNumCtx accepts a num_ctx up to the context length replicas are sized
// for (any, when that is unknown).
func (r *Router) vetNumCtx(v any) *OptionError {
	n, ok := wholeNumber(v)
	if !ok {
		return &OptionError{Option: "num_ctx", Reason: "it must be a whole number"}
	}
	if limit := r.cfg.ContextLength; limit > 0 && n > float64(limit) {
		return &OptionError{Option: "num_ctx", Reason: fmt.Sprintf(
			"%.0f is more than the context length of %d tokens that replicas are sized for; leave num_ctx out or ask for at most %d", n, limit, limit)}
	}
	return nil
}

// vetNumPredict accepts a num_predict up to the context length replicas
// are sized for: no replica can generate more. Ollama's -1 (no limit) and
// -2 (until the context is full) stay allowed.
func (r *Router) vetNumPredict(v any) *OptionError {
	n, ok := wholeNumber(v)
	if !ok {
		return &OptionError{Option: "num_predict", Reason: "it must be a whole number"}
	}
	if limit := r.cfg.ContextLength; limit > 0 && n > float64(limit) {
		return &OptionError{Option: "num_predict", Reason: fmt.Sprintf(
			"%.0f is more than the context length of %d tokens that replicas are sized for; ask for at most %d", n, limit, limit)}
	}
	return nil
}

// wholeOptions are the sampling options that hold whole numbers; stop
// holds a string or strings, the others numbers.
var wholeOptions = toSet([]string{"num_keep", "seed", "top_k", "repeat_last_n"})

// maxWhole bounds the whole numbers of options: those a float64 holds
// exactly.
const maxWhole = 1 << 53

// vetSampling checks that a sampling option's value is of the kind Ollama
// reads it as: a whole number, a number it can hold (a float32) or, for
// stop, an array of strings.
func vetSampling(k string, v any) *OptionError {
	bad := func(why string) *OptionError { return &OptionError{Option: k, Reason: why, Invalid: true} }
	switch {
	case k == "stop":
		if !isStrings(v) {
			return bad("it must be an array of strings")
		}
	case wholeOptions[k]:
		if n, ok := wholeNumber(v); !ok || math.Abs(n) > maxWhole {
			return bad("it must be a whole number")
		}
	default:
		if n, ok := number(v); !ok || math.IsNaN(n) || math.Abs(n) > math.MaxFloat32 {
			return bad("it must be a number")
		}
	}
	return nil
}

// isStrings reports whether v is an array of strings, as Ollama reads
// stop (a lone string fails the request there).
func isStrings(v any) bool {
	switch s := v.(type) {
	case []string:
		return true
	case []any:
		for _, e := range s {
			if _, ok := e.(string); !ok {
				return false
			}
		}
		return true
	}
	return false
}

// number reads a number as JSON decodes it or as a Go caller (the
// OpenAI and Anthropic translators) sets it.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	}
	return 0, false
}

// wholeNumber reads a whole number as JSON decodes it (float64) or as a
// Go caller sets it.
func wholeNumber(v any) (float64, bool) {
	n, ok := number(v)
	return n, ok && n == math.Trunc(n) && !math.IsInf(n, 0)
}

// keepAliveFor is the keep_alive to send with a request served here for
// tag: the agent's pin when a deployment of it is placed on this node,
// none otherwise.
func (r *Router) keepAliveFor(tag string) *api.Duration {
	if r.state == nil {
		return nil
	}
	placed := false
	r.state.Read(func(s *state.State) {
		for _, d := range s.Deployments {
			if deploymentIs(d, tag) && s.Placement(d.Name, r.self) != nil {
				placed = true
				return
			}
		}
	})
	if !placed {
		return nil
	}
	return &api.Duration{Duration: backend.PinKeepAlive}
}
