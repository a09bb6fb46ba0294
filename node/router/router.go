// Package router picks where each inference request runs. It is a
// backend.Backend in front of the local Ollama. First it vets what the
// client asks (policy.go): a model no deployment names (unless the node
// serves undeployed models), a cloud model, an option that sets how a
// model is loaded and the client's keep_alive never reach Ollama. A
// request for a deployed model goes to the ready replica, here or on a
// peer, that the routing policy (package balance) expects to finish it
// first, given the live load of every replica (package load); a request
// for anything else goes to the local Ollama, which may still have the
// model. Requests that run here wait for a slot in the model's admission
// queue (package admit), fairly across clients. A failure before the
// first byte is retried on another replica, a bounded number of times; a
// forwarded request is never forwarded again. Each replica has a circuit
// breaker, so one that fails fast is not mistaken for an idle one. A
// request may name the jurisdictions allowed to serve it; replicas
// elsewhere are never chosen.
//
// With WithWake, a request for a deployment that may go idle records its
// use (a rate-limited TouchDeployment, in the background), and one that
// finds the deployment idle or still loading wakes it and waits for a
// ready replica, up to a bound, before it fails with a *LoadingError.
package router

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router/admit"
	"github.com/sovra/sovra/node/router/balance"
	"github.com/sovra/sovra/node/router/load"
)

// StateSource is the local view of the replicated state.
type StateSource interface {
	Read(fn func(*state.State))
}

// PeerDialer returns a backend that reaches another node's Ollama-native API.
type PeerDialer func(n state.Node) (backend.Backend, error)

// Router routes by model over the cluster's ready placements.
type Router struct {
	self  string
	local backend.Backend
	state StateSource
	dial  PeerDialer

	mu    sync.Mutex
	peers map[string]peer // by node id
	// localList is the local Ollama's models, known to get queues and
	// labels of their own.
	localList localModels

	wake *waker // nil: idle deployments are not woken

	cfg      Config
	bal      *balance.Balancer
	queues   *admit.Group
	tracker  *load.Tracker
	breakers *breakers
	met      *metrics
	budget   retryBudget
	ledger   ledger           // this node's recent requests to peers
	arrivals meters[string]   // requests reaching the admission queues, by model
	running  inflight[string] // requests running on the local Ollama, by model
	seq      atomic.Uint64    // load report sequence
	// changed, when set, is told that this node's load changed (see
	// OnLoadChange).
	changed atomic.Pointer[func()]
}

// OnLoadChange sets fn to be called whenever a request reaches this
// node's admission queue or ends here, so that the load exchange can push
// the change at once (load.Feed.Kick). fn must not block.
func (r *Router) OnLoadChange(fn func()) { r.changed.Store(&fn) }

// loadChanged tells the OnLoadChange func, if any, that the load changed.
func (r *Router) loadChanged() {
	if fn := r.changed.Load(); fn != nil {
		(*fn)()
	}
}

type peer struct {
	addr string
	be   backend.Backend
}

// New returns a router for node self. state and dial may be nil for a node
// outside any cluster: every request then runs locally.
func New(self string, local backend.Backend, st StateSource, dial PeerDialer) *Router {
	r := &Router{self: self, local: local, state: st, dial: dial, peers: map[string]peer{},
		budget: retryBudget{tokens: retryBurst}}
	return r.WithConfig(Config{})
}

var _ backend.Backend = (*Router)(nil)

type forwardedKey struct{}

// forwarding is how a request came: from another node, and whether this
// node may send it back (see sendback.go).
type forwarding uint8

const (
	forwardedHere forwarding = iota + 1
	forwardedSendBack
)

// Forwarded marks ctx as serving a request another node forwarded here: it
// runs locally and is never forwarded again.
func Forwarded(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardedKey{}, forwardedHere)
}

func isForwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(forwarding)
	return v != 0
}

// route is where one request goes: the backend and the Ollama tag to ask
// it for (a deployment's served name becomes its tag).
type route struct {
	be  backend.Backend
	tag string
	// idle are the deployments that may go idle the request uses: each
	// chunk of its answer records their use again (rate-limited), so a
	// stream longer than the idle timeout keeps its replica.
	idle []idleInfo
}

// used records the use of the route's deployments that may go idle.
func (r *Router) used(rt route) {
	for _, d := range rt.idle {
		r.wake.touch(d)
	}
}

// pick is where a request that needs no slot (a model's description)
// goes: this node when it has a ready replica, else the first ready
// replica by node id, else the local Ollama.
func (r *Router) pick(ctx context.Context, model string) (route, error) {
	if r.state == nil || isForwarded(ctx) {
		return route{be: r.local, tag: model}, nil
	}
	pl, err := r.plan(ctx, model)
	if err != nil {
		return route{}, err
	}
	if len(pl.nodes) == 0 {
		return route{be: r.local, tag: pl.tag}, nil
	}
	n := pl.nodes[0]
	if _, ok := pl.byID[r.self]; ok {
		return route{be: r.local, tag: pl.tag}, nil
	}
	be, err := r.peer(n)
	if err != nil {
		return route{}, err
	}
	return route{be: be, tag: pl.tag}, nil
}

// matched is what a requested model name resolves to: the Ollama tag, the
// ready nodes that hold a ready replica of it (sorted by id), and the
// matching deployments that may go idle (sorted by name).
type matched struct {
	tag   string
	nodes []state.Node
	idle  []idleInfo
	// placed are the labels of the nodes holding a replica in any state.
	placed []map[string]string
	// names are the matching deployments.
	names []string
}

func (r *Router) match(model string) matched {
	m := matched{tag: model}
	want := normalize(model)
	r.state.Read(func(s *state.State) {
		for _, d := range s.Deployments {
			if d.Name != model && normalize(d.Model) != want {
				continue
			}
			m.tag = d.Model
			m.names = append(m.names, d.Name)
			for _, p := range s.PlacementsOf(d.Name) {
				n, ok := s.Nodes[p.Node]
				if !ok {
					continue
				}
				m.placed = append(m.placed, n.Labels)
				if p.State == state.PlacementReady && n.Status == state.NodeReady {
					m.nodes = append(m.nodes, *n)
				}
			}
			if d.IdleTimeout > 0 {
				m.idle = append(m.idle, idleInfo{name: d.Name, timeout: time.Duration(d.IdleTimeout) * time.Second,
					idle: d.Idle, progress: progressOf(s, d)})
			}
		}
	})
	sort.Slice(m.nodes, func(i, j int) bool { return m.nodes[i].ID < m.nodes[j].ID })
	sort.Slice(m.idle, func(i, j int) bool { return m.idle[i].name < m.idle[j].name })
	return m
}

func normalize(name string) string {
	name = strings.ToLower(strings.TrimPrefix(name, "library/"))
	if !strings.Contains(name, ":") {
		name += ":latest"
	}
	return name
}

func (r *Router) peer(n state.Node) (backend.Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[n.ID]; ok && p.addr == n.HTTPAddr {
		return p.be, nil
	}
	be, err := r.dial(n)
	if err != nil {
		return nil, err
	}
	r.peers[n.ID] = peer{addr: n.HTTPAddr, be: be}
	return be, nil
}

// Chat runs a chat where it will finish first, once the policy allows it
// (see policy.go).
func (r *Router) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	opts, err := r.vet(req.Model, req.Options)
	if err != nil {
		return err
	}
	r.budget.earn()
	asked := req.Model
	q := request{model: req.Model, maxTokens: numPredict(opts)}
	q.prefix, q.prefixBytes = chatPrefix(req)
	return r.route(ctx, q, func(ctx context.Context, to target, p *progress) error {
		out := *req
		out.Model, out.Options, out.KeepAlive = to.tag, opts, to.keepAlive
		return to.be.Chat(ctx, &out, func(resp api.ChatResponse) error {
			p.chunk(resp.Done, resp.Metrics)
			resp.Model = asked
			return fn(resp)
		})
	})
}

// Generate runs a completion where it will finish first, once the policy
// allows it.
func (r *Router) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	opts, err := r.vet(req.Model, req.Options)
	if err != nil {
		return err
	}
	r.budget.earn()
	asked := req.Model
	q := request{model: req.Model, maxTokens: numPredict(opts)}
	q.prefix, q.prefixBytes, q.promptBytes = generatePrefix(req)
	return r.route(ctx, q, func(ctx context.Context, to target, p *progress) error {
		out := *req
		out.Model, out.Options, out.KeepAlive = to.tag, opts, to.keepAlive
		return to.be.Generate(ctx, &out, func(resp api.GenerateResponse) error {
			p.chunk(resp.Done, resp.Metrics)
			resp.Model = asked
			return fn(resp)
		})
	})
}

// Embed computes embeddings where they will finish first, once the policy
// allows it.
func (r *Router) Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	opts, err := r.vet(req.Model, req.Options)
	if err != nil {
		return nil, err
	}
	r.budget.earn()
	var resp *api.EmbedResponse
	err = r.route(ctx, request{model: req.Model}, func(ctx context.Context, to target, p *progress) error {
		out := *req
		out.Model, out.Options, out.KeepAlive = to.tag, opts, to.keepAlive
		res, err := to.be.Embed(ctx, &out)
		if err != nil {
			return err
		}
		p.chunk(true, api.Metrics{})
		res.Model = req.Model
		resp = res
		return nil
	})
	return resp, err
}

// Show describes a served model from a node that has it.
func (r *Router) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	if err := r.vetModel(req.Model); err != nil {
		return nil, err
	}
	rt, err := r.pick(ctx, req.Model)
	if err != nil {
		return nil, err
	}
	out := *req
	out.Model = rt.tag
	return rt.be.Show(ctx, &out)
}

// List lists what is ready anywhere in the cluster (by deployment name)
// and, when the node serves undeployed models, what else the local Ollama
// has (cloud models left out).
func (r *Router) List(ctx context.Context) (*api.ListResponse, error) {
	local, err := r.local.List(ctx)
	if err != nil && (r.state == nil || isForwarded(ctx)) {
		return nil, err
	}
	out := &api.ListResponse{}
	seen := map[string]bool{}
	for _, d := range r.readyDeployments() {
		seen[normalize(d.Name)] = true
		out.Models = append(out.Models, api.ListModelResponse{Name: d.Name, Model: d.Model, ModifiedAt: time.Unix(0, 0)})
	}
	if local != nil && r.cfg.ServeUndeployed {
		for _, m := range local.Models {
			if !seen[normalize(m.Name)] && !IsCloudModel(m.Name) {
				out.Models = append(out.Models, m)
			}
		}
	}
	out.Models = allowedModels(MetaOf(ctx), out.Models)
	return out, nil
}

// allowedModels keeps the models the client may use (an API key limited
// to some models lists only those).
func allowedModels(meta Meta, models []api.ListModelResponse) []api.ListModelResponse {
	if meta.ModelAllowed == nil {
		return models
	}
	kept := models[:0]
	for _, m := range models {
		if meta.ModelAllowed(m.Name, m.Model) {
			kept = append(kept, m)
		}
	}
	return kept
}

func (r *Router) readyDeployments() []state.Deployment {
	if r.state == nil {
		return nil
	}
	var out []state.Deployment
	r.state.Read(func(s *state.State) {
		for _, d := range s.DeploymentList() {
			if d.Idle {
				// Served: the first request wakes it.
				out = append(out, *d)
				continue
			}
			for _, p := range s.PlacementsOf(d.Name) {
				if n, ok := s.Nodes[p.Node]; ok && p.State == state.PlacementReady && n.Status == state.NodeReady {
					out = append(out, *d)
					break
				}
			}
		}
	})
	return out
}

// ListRunning, Pull, Delete, Version and Heartbeat concern the local Ollama.

// ListRunning lists the models loaded in the local Ollama.
func (r *Router) ListRunning(ctx context.Context) (*api.ProcessResponse, error) {
	return r.local.ListRunning(ctx)
}

// Pull pulls a model into the local Ollama.
func (r *Router) Pull(ctx context.Context, req *api.PullRequest, fn func(api.ProgressResponse) error) error {
	return r.local.Pull(ctx, req, fn)
}

// Delete deletes a model from the local Ollama.
func (r *Router) Delete(ctx context.Context, req *api.DeleteRequest) error {
	return r.local.Delete(ctx, req)
}

// Copy gives a model of the local Ollama a second name.
func (r *Router) Copy(ctx context.Context, req *api.CopyRequest) error { return r.local.Copy(ctx, req) }

// Version is the local Ollama's version.
func (r *Router) Version(ctx context.Context) (string, error) { return r.local.Version(ctx) }

// Heartbeat checks the local Ollama.
func (r *Router) Heartbeat(ctx context.Context) error { return r.local.Heartbeat(ctx) }

// numPredict is the answer's token bound a request sets (0: none).
func numPredict(opts map[string]any) int {
	switch v := opts["num_predict"].(type) {
	case float64:
		return max(0, int(v))
	case int:
		return max(0, v)
	case int64:
		return max(0, int(v))
	}
	return 0
}

// promptChunk is the granularity of a completion's prefix keys, in bytes
// (about a hundred tokens).
const promptChunk = 512

// generatePrefix are a completion's prefix keys: one for each whole
// promptChunk of its system prompt and prompt, chained as a chat's are,
// with the bytes each covers and the whole prompt's length. A prompt that
// extends an earlier one (a conversation kept as text, a long shared
// preamble) shares the earlier one's keys up to its last whole chunk, so
// it finds the replica whose cache holds them; a prompt shorter than a
// chunk has none.
func generatePrefix(req *api.GenerateRequest) (keys []uint64, covered []int, total int) {
	text := req.System + "\x00" + req.Prompt
	chunks := make([]balance.Message, len(text)/promptChunk)
	covered = make([]int, len(chunks))
	for i := range chunks {
		chunks[i] = balance.Message{Content: text[i*promptChunk : (i+1)*promptChunk]}
		covered[i] = (i + 1) * promptChunk
	}
	return balance.PrefixKeys("", chunks), covered, len(text)
}

// chatPrefix are a chat's conversation prefix keys (see
// balance.PrefixKeys) and the bytes each covers. They leave the model
// out: the node that asks by a deployment's name and the node that serves
// its tag must agree.
func chatPrefix(req *api.ChatRequest) ([]uint64, []int) {
	msgs := make([]balance.Message, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = balance.Message{Role: m.Role, Content: m.Content}
	}
	return balance.PrefixKeys("", msgs), balance.PrefixBytes(msgs)
}
