// Package router picks where each inference request runs. It is a
// backend.Backend in front of the local Ollama: a request for a model that
// is ready on this node runs here; one for a model ready only on other
// nodes is forwarded to one of them; anything else goes to the local Ollama,
// which may still have the model. Load-aware choice among replicas comes
// later; for now the choice is stable per model and prefers this node.
//
// With WithWake, a request for a deployment that may go idle records its
// use (a rate-limited TouchDeployment, in the background), and one that
// finds the deployment idle or still loading wakes it and waits for a
// ready replica, up to a bound, before it fails with a *LoadingError.
package router

import (
	"context"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
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

	wake *waker // nil: idle deployments are not woken
}

type peer struct {
	addr string
	be   backend.Backend
}

// New returns a router for node self. state and dial may be nil for a node
// outside any cluster: every request then runs locally.
func New(self string, local backend.Backend, st StateSource, dial PeerDialer) *Router {
	return &Router{self: self, local: local, state: st, dial: dial, peers: map[string]peer{}}
}

var _ backend.Backend = (*Router)(nil)

type forwardedKey struct{}

// Forwarded marks ctx as serving a request another node forwarded here: it
// runs locally and is never forwarded again.
func Forwarded(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardedKey{}, true)
}

func isForwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(bool)
	return v
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

func (r *Router) pick(ctx context.Context, model string) (route, error) {
	if r.state == nil || isForwarded(ctx) {
		return route{be: r.local, tag: model}, nil
	}
	m := r.match(model)
	tag, nodes := m.tag, m.nodes
	var idle []idleInfo
	if r.wake != nil && r.wake.cfg.Proposer != nil && len(m.idle) > 0 {
		idle = m.idle
		r.used(route{idle: idle})
		if len(nodes) == 0 {
			var err error
			if tag, nodes, err = r.awaitReady(ctx, model, m.idle); err != nil {
				return route{}, err
			}
		}
	}
	if len(nodes) == 0 {
		return route{be: r.local, tag: tag, idle: idle}, nil
	}
	for _, n := range nodes {
		if n.ID == r.self {
			return route{be: r.local, tag: tag, idle: idle}, nil
		}
	}
	n := nodes[stableIndex(model, len(nodes))]
	be, err := r.peer(n)
	if err != nil {
		return route{}, err
	}
	return route{be: be, tag: tag, idle: idle}, nil
}

// matched is what a requested model name resolves to: the Ollama tag, the
// ready nodes that hold a ready replica of it (sorted by id), and the
// matching deployments that may go idle (sorted by name).
type matched struct {
	tag   string
	nodes []state.Node
	idle  []idleInfo
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
			for _, p := range s.PlacementsOf(d.Name) {
				if n, ok := s.Nodes[p.Node]; ok && p.State == state.PlacementReady && n.Status == state.NodeReady {
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

func stableIndex(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
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

// Chat runs a chat where the model is.
func (r *Router) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	rt, err := r.pick(ctx, req.Model)
	if err != nil {
		return err
	}
	asked := req.Model
	out := *req
	out.Model = rt.tag
	return rt.be.Chat(ctx, &out, func(resp api.ChatResponse) error {
		r.used(rt)
		resp.Model = asked
		return fn(resp)
	})
}

// Generate runs a completion where the model is.
func (r *Router) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	rt, err := r.pick(ctx, req.Model)
	if err != nil {
		return err
	}
	asked := req.Model
	out := *req
	out.Model = rt.tag
	return rt.be.Generate(ctx, &out, func(resp api.GenerateResponse) error {
		r.used(rt)
		resp.Model = asked
		return fn(resp)
	})
}

// Embed computes embeddings where the model is.
func (r *Router) Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	rt, err := r.pick(ctx, req.Model)
	if err != nil {
		return nil, err
	}
	out := *req
	out.Model = rt.tag
	resp, err := rt.be.Embed(ctx, &out)
	r.used(rt)
	if resp != nil {
		resp.Model = req.Model
	}
	return resp, err
}

// Show describes a model from a node that has it.
func (r *Router) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	rt, err := r.pick(ctx, req.Model)
	if err != nil {
		return nil, err
	}
	out := *req
	out.Model = rt.tag
	return rt.be.Show(ctx, &out)
}

// List lists what is ready anywhere in the cluster (by deployment name)
// and what the local Ollama has.
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
	if local != nil {
		for _, m := range local.Models {
			if !seen[normalize(m.Name)] {
				out.Models = append(out.Models, m)
			}
		}
	}
	return out, nil
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

// Version is the local Ollama's version.
func (r *Router) Version(ctx context.Context) (string, error) { return r.local.Version(ctx) }

// Heartbeat checks the local Ollama.
func (r *Router) Heartbeat(ctx context.Context) error { return r.local.Heartbeat(ctx) }
