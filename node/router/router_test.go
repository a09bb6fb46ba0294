package router

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
)

// named is a backend that answers every chat with its own name.
type named struct {
	listless
	name string
	got  string // the model it was asked for
}

func (n *named) Chat(_ context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	n.got = req.Model
	return fn(api.ChatResponse{Model: req.Model, Done: true, Message: api.Message{Content: n.name}})
}

// listless is what the fake backends embed: a local Ollama without
// models.
type listless struct{ backend.Backend }

func (listless) List(context.Context) (*api.ListResponse, error) { return &api.ListResponse{}, nil }

type fixed struct{ s *state.State }

func (f fixed) Read(fn func(*state.State)) { fn(f.s) }

func TestPick(t *testing.T) {
	s := state.New()
	s.Nodes["a"] = &state.Node{ID: "a", Status: state.NodeReady}
	s.Nodes["b"] = &state.Node{ID: "b", Status: state.NodeReady}
	s.Nodes["c"] = &state.Node{ID: "c", Status: state.NodeDown}
	s.Deployments["eu-chat"] = &state.Deployment{Name: "eu-chat", Model: "llama3.1:8b", Replicas: 2}
	s.Deployments["down-only"] = &state.Deployment{Name: "down-only", Model: "mistral:7b", Replicas: 1}
	s.Placements["eu-chat\x00b"] = &state.Placement{Deployment: "eu-chat", Node: "b", State: state.PlacementReady}
	s.Placements["eu-chat\x00a"] = &state.Placement{Deployment: "eu-chat", Node: "a", State: state.PlacementPulling}
	s.Placements["down-only\x00c"] = &state.Placement{Deployment: "down-only", Node: "c", State: state.PlacementReady}

	cases := []struct {
		name      string
		self      string
		model     string
		forwarded bool
		wantBy    string
		wantTag   string
	}{
		{"served name goes to the ready replica with its tag", "a", "eu-chat", false, "b", "llama3.1:8b"},
		{"tag goes there too", "a", "llama3.1:8b", false, "b", "llama3.1:8b"},
		{"tag without :latest is matched", "a", "LLAMA3.1:8b", false, "b", "llama3.1:8b"},
		{"this node's own ready replica wins", "b", "eu-chat", false, "local", "llama3.1:8b"},
		{"forwarded requests stay here", "a", "eu-chat", true, "local", "eu-chat"},
		{"replicas on down nodes are not used", "a", "down-only", false, "local", "mistral:7b"},
		{"undeployed models try the local Ollama", "a", "qwen3:0.6b", false, "local", "qwen3:0.6b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			local := &named{name: "local"}
			peers := map[string]*named{}
			r := New(tc.self, local, fixed{s}, func(n state.Node) (backend.Backend, error) {
				p := &named{name: n.ID}
				peers[n.ID] = p
				return p, nil
			}).WithConfig(Config{ServeUndeployed: true})
			ctx := context.Background()
			if tc.forwarded {
				ctx = Forwarded(ctx)
			}
			var by, model string
			err := r.Chat(ctx, &api.ChatRequest{Model: tc.model}, func(resp api.ChatResponse) error {
				by, model = resp.Message.Content, resp.Model
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if by != tc.wantBy || model != tc.model {
				t.Fatalf("served by %q as %q, want %q as %q", by, model, tc.wantBy, tc.model)
			}
			got := local.got
			if p, ok := peers[by]; ok {
				got = p.got
			}
			if got != tc.wantTag {
				t.Errorf("backend asked for %q, want %q", got, tc.wantTag)
			}
		})
	}
}

func TestStandaloneRunsLocally(t *testing.T) {
	local := &named{name: "local"}
	r := New("a", local, nil, nil).WithConfig(Config{ServeUndeployed: true})
	if err := r.Chat(context.Background(), &api.ChatRequest{Model: "m"}, func(api.ChatResponse) error { return nil }); err != nil || local.got != "m" {
		t.Fatalf("err %v, local asked for %q", err, local.got)
	}
}

// TestLoadChangeIsTold checks that the OnLoadChange func hears of a
// request that takes a slot here and of its end, so that the load
// exchange pushes both at once.
func TestLoadChangeIsTold(t *testing.T) {
	local := &named{name: "local"}
	r := New("a", local, nil, nil).WithConfig(Config{ServeUndeployed: true})
	var calls atomic.Int32
	r.OnLoadChange(func() { calls.Add(1) })
	if err := r.Chat(context.Background(), &api.ChatRequest{Model: "m"}, func(api.ChatResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls for a request that ran and ended, want 2", n)
	}
}
