package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/node/agent"
)

// unloadRequests are the requests by which an Ollama client unloads a
// model, unpins it or makes Ollama load it again, as a node receives
// them (%q is the model).
var unloadRequests = []struct{ name, path, body string }{
	{"an empty generation with keep_alive 0", "/api/generate", `{"model":%q,"prompt":"","keep_alive":0}`},
	{"an empty chat with keep_alive 0", "/api/chat", `{"model":%q,"messages":[],"keep_alive":0}`},
	{"an empty embedding with keep_alive 0", "/api/embed", `{"model":%q,"input":[],"keep_alive":0}`},
	{"a generation with keep_alive 0", "/api/generate", `{"model":%q,"prompt":"hi","stream":false,"keep_alive":0,"options":{"num_predict":2}}`},
	{"a chat with a short keep_alive", "/api/chat", `{"model":%q,"messages":[{"role":"user","content":"hi"}],"stream":false,"keep_alive":"1s","options":{"num_predict":2}}`},
	{"a generation with its own num_ctx", "/api/generate", `{"model":%q,"prompt":"hi","stream":false,"options":{"num_ctx":1024,"num_predict":2}}`},
	{"an OpenAI chat", "/v1/chat/completions", `{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"keep_alive":0}`},
}

// checkClientCannotUnload sends each of unloadRequests for model through
// the node at url and checks after each that the Ollama behind it still
// holds the replica (Ollama tag tag) pinned, as the agent loaded it.
func checkClientCannotUnload(t *testing.T, url string, ollama *api.Client, model, tag string) {
	t.Helper()
	testwait.For(t, 30*time.Second, tag+" pinned by the agent", func() bool { return pinned(t, ollama, tag) })
	for _, rq := range unloadRequests {
		status, body := postBody(t, url+rq.path, fmt.Sprintf(rq.body, model))
		if status != http.StatusOK && !(rq.path == "/api/embed" && status == http.StatusBadRequest) {
			t.Fatalf("%s: %d %s", rq.name, status, body)
		}
		if !pinned(t, ollama, tag) {
			t.Fatalf("after %s (%d %s), Ollama no longer holds %s pinned", rq.name, status, body, tag)
		}
	}
}

// pinned reports whether Ollama runs tag with the agent's pin.
func pinned(t *testing.T, ollama *api.Client, tag string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := ollama.ListRunning(ctx)
	if err != nil {
		t.Fatalf("/api/ps: %v", err)
	}
	for _, m := range ps.Models {
		if m.Name == tag || m.Model == tag {
			return m.ExpiresAt.After(time.Now().Add(agent.PinnedHorizon))
		}
	}
	return false
}

func postBody(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := testauth.Client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(raw))
}

// TestClientCannotUnloadAReplica: keep_alive 0, a short keep_alive or a
// num_ctx of its own from a client leave a deployment's replica loaded
// and pinned in the simulated Ollama. TestClientCannotUnloadAReplicaOnRealOllama
// checks the same against a real one.
func TestClientCannotUnloadAReplica(t *testing.T) {
	c := startSimCluster(t, []simNode{{id: "a"}})
	c.deploy(t, `{"name":"chat","model":"llama3.2:1b","replicas":1}`, "a")
	checkClientCannotUnload(t, c.url("a"), c.sims["a"].Client(), "chat", "llama3.2:1b")
}

// TestUndeployedModelsNeedServeUndeployed: a node serves only deployed
// models unless it serves undeployed ones; a cloud model is refused
// either way, before it reaches Ollama.
func TestUndeployedModelsNeedServeUndeployed(t *testing.T) {
	const cloud = "gpt-oss:120b-cloud"
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	sim.AddModel(ollamasim.ModelConfig{Name: cloud})
	def := node.DefaultConfig()
	off := testnode.Start(t, sim.URL(), func(c *node.Config) { c.ServeUndeployed = def.ServeUndeployed })
	on := testnode.Start(t, sim.URL(), func(c *node.Config) { c.ServeUndeployed = true })
	chat := `{"model":%q,"stream":false,"messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	cases := []struct {
		name  string
		url   string
		model string
		want  int
	}{
		{"an undeployed model by default", off.URL(), "llama3.2:1b", http.StatusNotFound},
		{"an undeployed model with --serve-undeployed", on.URL(), "llama3.2:1b", http.StatusOK},
		{"a cloud model by default", off.URL(), cloud, http.StatusNotFound},
		{"a cloud model with --serve-undeployed", on.URL(), cloud, http.StatusNotFound},
	}
	for _, tc := range cases {
		for _, path := range []string{"/v1/chat/completions", "/api/chat"} {
			status, body := postBody(t, tc.url+path, fmt.Sprintf(chat, tc.model))
			if status != tc.want || (status == http.StatusNotFound && path == "/v1/chat/completions" && !strings.Contains(body, `"model_not_found"`)) {
				t.Errorf("%s, %s: %d %s; want %d", tc.name, path, status, body, tc.want)
			}
		}
	}
	for _, r := range sim.Requests() {
		if r.Model == cloud {
			t.Errorf("a request for the cloud model reached Ollama: %+v", r)
		}
	}
	if status, body := getBody(t, off.URL()+"/v1/models"); status != http.StatusOK || strings.Contains(body, "llama3.2") {
		t.Errorf("models listed by a node serving no undeployed model: %d %s", status, body)
	}
	if status, body := getBody(t, on.URL()+"/v1/models"); status != http.StatusOK || !strings.Contains(body, "llama3.2:1b") || strings.Contains(body, cloud) {
		t.Errorf("models listed with --serve-undeployed: %d %s", status, body)
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := testauth.Client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(raw)
}
