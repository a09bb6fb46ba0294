package router

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
)

func TestOptionPolicy(t *testing.T) {
	sampling := map[string]any{"temperature": 0.2, "top_p": 0.9, "top_k": 40.0, "seed": 7.0, "stop": []any{"\n"},
		"num_predict": 16.0, "repeat_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": 0.5, "min_p": 0.05,
		"typical_p": 1.0, "repeat_last_n": 64.0, "num_keep": 4.0}
	cases := []struct {
		name    string
		opts    map[string]any
		want    map[string]any // what is passed on
		refused string         // the option named by the error
	}{
		{name: "none", opts: nil, want: nil},
		{name: "sampling options pass", opts: sampling, want: sampling},
		{name: "num_ctx within the context length is dropped", opts: map[string]any{"num_ctx": 4096.0, "temperature": 0.1}, want: map[string]any{"temperature": 0.1}},
		{name: "num_ctx at the context length is dropped", opts: map[string]any{"num_ctx": 8192}, want: map[string]any{}},
		{name: "num_ctx above the context length", opts: map[string]any{"num_ctx": 131072.0}, refused: "num_ctx"},
		{name: "num_ctx not a whole number", opts: map[string]any{"num_ctx": "big"}, refused: "num_ctx"},
		{name: "num_predict at the context length", opts: map[string]any{"num_predict": 8192.0}, want: map[string]any{"num_predict": 8192.0}},
		{name: "num_predict -1 (no limit) stays Ollama's", opts: map[string]any{"num_predict": -1.0}, want: map[string]any{"num_predict": -1.0}},
		{name: "num_predict above the context length", opts: map[string]any{"num_predict": 1e12}, refused: "num_predict"},
		{name: "num_predict not a whole number", opts: map[string]any{"num_predict": 1.5}, refused: "num_predict"},
		{name: "num_gpu", opts: map[string]any{"num_gpu": 0.0}, refused: "num_gpu"},
		{name: "main_gpu", opts: map[string]any{"main_gpu": 1.0}, refused: "main_gpu"},
		{name: "use_mmap", opts: map[string]any{"use_mmap": false}, refused: "use_mmap"},
		{name: "use_mlock", opts: map[string]any{"use_mlock": true}, refused: "use_mlock"},
		{name: "num_thread", opts: map[string]any{"num_thread": 64.0}, refused: "num_thread"},
		{name: "low_vram", opts: map[string]any{"low_vram": true}, refused: "low_vram"},
		{name: "numa", opts: map[string]any{"numa": true}, refused: "numa"},
		{name: "num_batch", opts: map[string]any{"num_batch": 4096.0}, refused: "num_batch"},
		{name: "f16_kv", opts: map[string]any{"f16_kv": false}, refused: "f16_kv"},
		{name: "vocab_only", opts: map[string]any{"vocab_only": true}, refused: "vocab_only"},
		{name: "an unknown option", opts: map[string]any{"flash_attention": true}, refused: "flash_attention"},
		{name: "the first refused by name", opts: map[string]any{"num_gpu": 0.0, "main_gpu": 0.0, "temperature": 1.0}, refused: "main_gpu"},
		{name: "translators' Go types pass", opts: map[string]any{"temperature": float32(0.5), "top_p": 1, "seed": 3, "stop": []string{"x"}},
			want: map[string]any{"temperature": float32(0.5), "top_p": 1, "seed": 3, "stop": []string{"x"}}},
		{name: "temperature a string", opts: map[string]any{"temperature": "hot"}, refused: "temperature"},
		{name: "temperature past a float32", opts: map[string]any{"temperature": 1e308}, refused: "temperature"},
		{name: "seed not whole", opts: map[string]any{"seed": 1.5}, refused: "seed"},
		{name: "top_k past 2^53", opts: map[string]any{"top_k": 1e300}, refused: "top_k"},
		{name: "stop of numbers", opts: map[string]any{"stop": []any{1.0}}, refused: "stop"},
		{name: "stop an object", opts: map[string]any{"stop": map[string]any{}}, refused: "stop"},
		{name: "stop a string (Ollama fails it)", opts: map[string]any{"stop": "x"}, refused: "stop"},
		{name: "repeat_penalty a boolean", opts: map[string]any{"repeat_penalty": true}, refused: "repeat_penalty"},
	}
	r := New("a", nil, nil, nil).WithConfig(Config{ServeUndeployed: true, ContextLength: 8192})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.vetOptions(tc.opts)
			if tc.refused == "" {
				if err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("passed on %v, err %v; want %v", got, err, tc.want)
				}
				return
			}
			var oe *OptionError
			if !errors.Is(err, ErrOptionRefused) || !errors.As(err, &oe) || oe.Option != tc.refused {
				t.Fatalf("err %v, want %s refused", err, tc.refused)
			}
			if !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("message %q does not name %s", err, tc.refused)
			}
		})
	}
}

// TestOptionListsFollowOllama checks the lists against the Ollama this
// build speaks: every sampling option is one of its per-request options,
// and each of its options is either allowed or refused on purpose, so an
// upgrade that adds one is noticed here.
func TestOptionListsFollowOllama(t *testing.T) {
	runner := jsonTags(reflect.TypeOf(api.Runner{}))
	var perRequest []string
	for _, tag := range jsonTags(reflect.TypeOf(api.Options{})) {
		if !slices.Contains(runner, tag) {
			perRequest = append(perRequest, tag)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(perRequest)), slices.Sorted(slices.Values(SamplingOptions))) {
		t.Errorf("Ollama's per-request options %v, the allowed ones %v", perRequest, SamplingOptions)
	}
	for _, tag := range runner {
		if tag != "num_ctx" && !slices.Contains(LoadOptions, tag) {
			t.Errorf("Ollama's load option %s is not in LoadOptions", tag)
		}
	}
}

func jsonTags(typ reflect.Type) []string {
	var out []string
	for _, f := range reflect.VisibleFields(typ) {
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

func TestIsCloudModel(t *testing.T) {
	cases := map[string]bool{
		"gpt-oss:120b-cloud": true, "glm-4.6:cloud": true, "Qwen3-Coder:480B-Cloud": true,
		"library/kimi-k2:1t-cloud": true, "deepseek-v3.1:671b-cloud@sha256:abc": true,
		"llama3.2:1b": false, "cloud": false, "cloud-model:7b": false, "acme/cloud:latest": false, "": false,
	}
	for name, want := range cases {
		if got := IsCloudModel(name); got != want {
			t.Errorf("IsCloudModel(%q) = %v, want %v", name, got, want)
		}
	}
}

// policyState has deployment "chat" (llama3.1:8b) placed on node a,
// "remote" (mistral:7b) placed on b only, and "team chat/eu" (qwen3:8b),
// whose name Ollama would refuse, placed nowhere.
func policyState() *state.State {
	s := state.New()
	s.Nodes["a"] = &state.Node{ID: "a", Status: state.NodeReady}
	s.Nodes["b"] = &state.Node{ID: "b", Status: state.NodeReady}
	s.Deployments["chat"] = &state.Deployment{Name: "chat", Model: "llama3.1:8b", Replicas: 1}
	s.Deployments["remote"] = &state.Deployment{Name: "remote", Model: "mistral:7b", Replicas: 1}
	s.Deployments["team chat/eu"] = &state.Deployment{Name: "team chat/eu", Model: "qwen3:8b", Replicas: 1}
	s.Placements["chat\x00a"] = &state.Placement{Deployment: "chat", Node: "a", State: state.PlacementReady}
	s.Placements["remote\x00b"] = &state.Placement{Deployment: "remote", Node: "b", State: state.PlacementLoading}
	return s
}

func TestModelPolicy(t *testing.T) {
	long := strings.Repeat("x", 500) + ":7b"
	cases := []struct {
		name       string
		model      string
		undeployed bool
		clustered  bool
		want       error // nil, ErrModelNotServed, ErrCloudModel or ErrInvalidModelName
	}{
		{"a deployment's name Ollama would refuse", "team chat/eu", false, true, nil},
		{"a path as a name", "../../etc/passwd", false, true, ErrInvalidModelName},
		{"a path as a name with ServeUndeployed", "../../etc/passwd", true, true, ErrInvalidModelName},
		{"too many parts with ServeUndeployed", "a/b/c/d", true, false, ErrInvalidModelName},
		{"a space with ServeUndeployed", "a b:1b", true, false, ErrInvalidModelName},
		{"a host, namespace and tag with ServeUndeployed", "hf.co/org/repo:Q4_K_M", true, false, nil},
		{"a deployment's name", "chat", false, true, nil},
		{"a deployment's tag", "LLAMA3.1:8b", false, true, nil},
		{"a deployment placed elsewhere", "mistral:7b", false, true, nil},
		{"an undeployed model", "qwen3:0.6b", false, true, ErrModelNotServed},
		{"an undeployed model with ServeUndeployed", "qwen3:0.6b", true, true, nil},
		{"any model on a node without a cluster", "chat", false, false, ErrModelNotServed},
		{"a node without a cluster with ServeUndeployed", "qwen3:0.6b", true, false, nil},
		{"a cloud model", "gpt-oss:120b-cloud", false, true, ErrCloudModel},
		{"a cloud model with ServeUndeployed", "glm-4.6:cloud", true, false, ErrCloudModel},
		{"a long name", long, false, true, ErrInvalidModelName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var st StateSource
			if tc.clustered {
				st = fixed{policyState()}
			}
			local := &recorder{}
			r := New("a", local, st, nil).WithConfig(Config{ServeUndeployed: tc.undeployed})
			err := r.Chat(context.Background(), &api.ChatRequest{Model: tc.model}, func(api.ChatResponse) error { return nil })
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrModelNotServed) || local.chats != 0 {
				t.Fatalf("err %v after %d backend calls, want %v at once", err, local.chats, tc.want)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("the message repeats too much of the name: %q", err)
			}
		})
	}
}

// recorder is a backend that records what it was asked.
type recorder struct {
	backend.Backend
	chats     int
	model     string
	options   map[string]any
	keepAlive *api.Duration
}

// List has no models: the recorder's Ollama lists nothing.
func (r *recorder) List(context.Context) (*api.ListResponse, error) { return &api.ListResponse{}, nil }

func (r *recorder) Chat(_ context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	r.chats++
	r.model, r.options, r.keepAlive = req.Model, req.Options, req.KeepAlive
	return fn(api.ChatResponse{Model: req.Model, Done: true})
}

func (r *recorder) Generate(_ context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	r.model, r.options, r.keepAlive = req.Model, req.Options, req.KeepAlive
	return fn(api.GenerateResponse{Model: req.Model, Done: true})
}

func (r *recorder) Embed(_ context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	r.model, r.options, r.keepAlive = req.Model, req.Options, req.KeepAlive
	return &api.EmbedResponse{Model: req.Model}, nil
}

// TestClientKeepAliveIsNeverPassedOn: whatever keep_alive a client sends,
// a replica placed on the node gets the agent's pin, and any other
// request none.
func TestClientKeepAliveIsNeverPassedOn(t *testing.T) {
	pin := &api.Duration{Duration: backend.PinKeepAlive}
	cases := []struct {
		name      string
		self      string
		model     string
		forwarded bool
		want      *api.Duration
	}{
		{"a replica placed here", "a", "chat", false, pin},
		{"a replica placed here, by tag", "a", "llama3.1:8b", false, pin},
		{"a forwarded request for a replica placed here", "a", "llama3.1:8b", true, pin},
		{"a deployment placed elsewhere, tried here", "a", "remote", false, nil},
		{"an undeployed model", "a", "qwen3:0.6b", false, nil},
	}
	for _, tc := range cases {
		for _, asked := range []*api.Duration{{Duration: 0}, {Duration: time.Second}, nil} {
			t.Run(tc.name, func(t *testing.T) {
				local := &recorder{}
				r := New(tc.self, local, fixed{policyState()}, nil).WithConfig(Config{ServeUndeployed: true})
				ctx := context.Background()
				if tc.forwarded {
					ctx = Forwarded(ctx)
				}
				calls := map[string]func() error{
					"chat": func() error {
						return r.Chat(ctx, &api.ChatRequest{Model: tc.model, KeepAlive: asked}, func(api.ChatResponse) error { return nil })
					},
					"generate": func() error {
						return r.Generate(ctx, &api.GenerateRequest{Model: tc.model, KeepAlive: asked}, func(api.GenerateResponse) error { return nil })
					},
					"embed": func() error {
						_, err := r.Embed(ctx, &api.EmbedRequest{Model: tc.model, KeepAlive: asked})
						return err
					},
				}
				for name, call := range calls {
					local.keepAlive = &api.Duration{Duration: -42}
					if err := call(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if !reflect.DeepEqual(local.keepAlive, tc.want) {
						t.Errorf("%s with keep_alive %v: Ollama got %v, want %v", name, asked, local.keepAlive, tc.want)
					}
				}
			})
		}
	}
}

func TestShowAndListFollowThePolicy(t *testing.T) {
	local := &listing{names: []string{"llama3.1:8b", "qwen3:0.6b", "gpt-oss:120b-cloud"}}
	for _, undeployed := range []bool{false, true} {
		r := New("a", local, fixed{policyState()}, nil).WithConfig(Config{ServeUndeployed: undeployed})
		list, err := r.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range list.Models {
			names = append(names, m.Name)
		}
		want := []string{"chat"}
		if undeployed {
			want = append(want, "llama3.1:8b", "qwen3:0.6b")
		}
		if !slices.Equal(names, want) {
			t.Errorf("undeployed served %v: listed %v, want %v", undeployed, names, want)
		}
		_, err = r.Show(context.Background(), &api.ShowRequest{Model: "qwen3:0.6b"})
		if undeployed != (err == nil) {
			t.Errorf("undeployed served %v: show of an undeployed model: %v", undeployed, err)
		}
		if _, err := r.Show(context.Background(), &api.ShowRequest{Model: "gpt-oss:120b-cloud"}); !errors.Is(err, ErrCloudModel) {
			t.Errorf("undeployed served %v: show of a cloud model: %v", undeployed, err)
		}
	}
}

// listing is a backend whose Ollama has the given models.
type listing struct {
	backend.Backend
	names []string
}

func (l *listing) List(context.Context) (*api.ListResponse, error) {
	out := &api.ListResponse{}
	for _, n := range l.names {
		out.Models = append(out.Models, api.ListModelResponse{Name: n, Model: n})
	}
	return out, nil
}

func (l *listing) Show(context.Context, *api.ShowRequest) (*api.ShowResponse, error) {
	return &api.ShowResponse{}, nil
}

// TestListShowsOnlyAllowedModels: a client limited to some models (an API
// key's models) lists only those.
func TestListShowsOnlyAllowedModels(t *testing.T) {
	s := cluster3()
	s.Deployments["code"] = &state.Deployment{Name: "code", Model: "c:1", Replicas: 1}
	s.Placements["code\x00a"] = &state.Placement{Deployment: "code", Node: "a", State: state.PlacementReady}
	r := New("a", &recorder{}, fixed{s}, nil)
	names := func(meta Meta) []string {
		list, err := r.List(WithMeta(context.Background(), meta))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range list.Models {
			out = append(out, m.Name)
		}
		slices.Sort(out)
		return out
	}
	only := func(allowed ...string) func(...string) bool {
		return func(names ...string) bool {
			for _, n := range names {
				if slices.Contains(allowed, n) {
					return true
				}
			}
			return false
		}
	}
	cases := []struct {
		name string
		meta Meta
		want []string
	}{
		{"no limit", Meta{}, []string{"chat", "code"}},
		{"one deployment", Meta{ModelAllowed: only("chat")}, []string{"chat"}},
		{"by its model tag", Meta{ModelAllowed: only("c:1")}, []string{"code"}},
		{"none", Meta{ModelAllowed: only("other")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(tc.meta); !slices.Equal(got, tc.want) {
				t.Fatalf("listed %v, want %v", got, tc.want)
			}
		})
	}
}

// TestValidModelNameRemembersWithinABound: a remembered name is answered
// as when first parsed, an invalid one is never remembered, and no more
// than maxValidNames are kept whatever clients send.
func TestValidModelNameRemembersWithinABound(t *testing.T) {
	for range 2 {
		if !ValidModelName("llama3.2:1b") {
			t.Fatal("llama3.2:1b is not valid")
		}
		if ValidModelName("bad name!") {
			t.Fatal("'bad name!' is valid")
		}
	}
	if _, ok := validNames.Load("bad name!"); ok {
		t.Fatal("an invalid name was remembered")
	}
	for i := range maxValidNames + 10 {
		if !ValidModelName(fmt.Sprintf("model%d:latest", i)) {
			t.Fatalf("model%d:latest is not valid", i)
		}
	}
	n := 0
	validNames.Range(func(any, any) bool { n++; return true })
	if n > maxValidNames {
		t.Fatalf("%d names remembered, at most %d", n, maxValidNames)
	}
}
