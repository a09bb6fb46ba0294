package node_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
)

// coderFigures are the figures of a 7B model no catalog knows.
const coderFigures = `"architecture":"qwen2","parameters":7600000000,"file_size":4700000000,` +
	`"layers":28,"embedding":3584,"heads":28,"kv_heads":4,"head_dim_k":128,"head_dim_v":128,"context_length":32768`

// catalogModel is an entry of GET /admin/v1/catalog.
type catalogModel struct {
	Name          string `json:"name"`
	Builtin       bool   `json:"builtin"`
	Source        string `json:"source"`
	Layers        int    `json:"layers"`
	KVHeads       int    `json:"kv_heads"`
	HeadDimK      int    `json:"head_dim_k"`
	MemoryBytes   uint64 `json:"memory_bytes"`
	ModifiedIndex uint64 `json:"modified_index"`
}

// TestCatalogRegistration registers, replaces, lists and removes models
// through the admin API, and checks what it refuses.
func TestCatalogRegistration(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	n := testnode.Start(t, sim.URL(), placed("solo", "1xA100:80GiB", "jurisdiction=EU"))
	labelNodes(t, n.URL(), "solo")
	waitView(t, n.URL(), allReady(1))
	api := n.URL() + "/admin/v1"

	steps := []struct {
		name, method, path, body string
		status                   int
		param, code              string
	}{
		{"register", "POST", "/catalog", `{"name":"Acme/Coder:7B",` + coderFigures + `}`, 201, "", ""},
		{"register again", "POST", "/catalog", `{"name":"acme/coder:7b",` + coderFigures + `}`, 409, "name", "exists"},
		{"replace", "POST", "/catalog", `{"name":"acme/coder:7b","replace":true,` + strings.Replace(coderFigures, `"layers":28`, `"layers":30`, 1) + `}`, 200, "", ""},
		{"GGUF defaults", "POST", "/catalog", `{"name":"acme/plain","architecture":"llama","parameters":1000000,"file_size":4000000,"layers":2,"embedding":64,"heads":4,"context_length":2048}`, 201, "", ""},
		{"no name", "POST", "/catalog", `{` + coderFigures + `}`, 400, "name", ""},
		{"bad name", "POST", "/catalog", `{"name":"a b",` + coderFigures + `}`, 400, "name", ""},
		{"built in", "POST", "/catalog", `{"name":"llama3.1:8b",` + coderFigures + `}`, 409, "name", "builtin"},
		{"no layers", "POST", "/catalog", `{"name":"x:1b",` + strings.Replace(coderFigures, `"layers":28`, `"layers":0`, 1) + `}`, 400, "layers", ""},
		{"KV heads", "POST", "/catalog", `{"name":"x:1b",` + strings.Replace(coderFigures, `"kv_heads":4`, `"kv_heads":5`, 1) + `}`, 400, "kv_heads", ""},
		{"no context", "POST", "/catalog", `{"name":"x:1b",` + strings.Replace(coderFigures, `"context_length":32768`, `"context_length":0`, 1) + `}`, 400, "context_length", ""},
		{"no weight size", "POST", "/catalog", `{"name":"x:1b",` + strings.Replace(coderFigures, `"file_size":4700000000`, `"quantization":"Q9"`, 1) + `}`, 400, "file_size", ""},
		{"wrong type", "POST", "/catalog", `{"name":"x:1b","layers":"many"}`, 400, "layers", ""},
		{"get registered", "GET", "/catalog/ACME/coder:7b", ``, 200, "", ""},
		{"get built in", "GET", "/catalog/llama3.1", ``, 200, "", ""},
		{"get unknown", "GET", "/catalog/nosuch:1b", ``, 404, "name", "not_found"},
		{"delete built in", "DELETE", "/catalog/llama3.1:8b", ``, 409, "name", "builtin"},
		{"delete", "DELETE", "/catalog/acme/plain", ``, 200, "", ""},
		{"delete again", "DELETE", "/catalog/acme/plain:latest", ``, 404, "name", "not_found"},
	}
	for _, s := range steps {
		st, _, raw := adminWith(t, s.method, api+s.path, s.body, nil)
		var e apiError
		_ = json.Unmarshal(raw, &e)
		if st != s.status || e.Error.Param != s.param || e.Error.Code != s.code {
			t.Fatalf("%s: got %d %s, want %d with param %q code %q", s.name, st, raw, s.status, s.param, s.code)
		}
	}

	var one catalogModel
	if st := admin(t, "GET", api+"/catalog/acme/coder:7b", "", &one); st != 200 || one.Name != "acme/coder:7b" || one.Layers != 30 ||
		one.Builtin || one.Source != "operator" || one.MemoryBytes < 4<<30 || one.ModifiedIndex == 0 {
		t.Fatalf("registered entry %d %+v", st, one)
	}
	var cat struct{ Models []catalogModel }
	if st := admin(t, "GET", api+"/catalog?stale=true", "", &cat); st != 200 {
		t.Fatalf("list: %d", st)
	}
	found := map[string]catalogModel{}
	for _, m := range cat.Models {
		found[m.Name] = m
	}
	if m, ok := found["acme/coder:7b"]; !ok || m.Builtin {
		t.Fatalf("listing lacks the registered model: %+v", m)
	}
	if m := found["llama3.1:8b"]; !m.Builtin || m.Layers != 32 {
		t.Fatalf("listing's built-in llama3.1:8b: %+v", m)
	}
	if _, ok := found["acme/plain:latest"]; ok {
		t.Fatal("listing holds a deleted model")
	}
}

// TestDeploymentOfAnUnknownModelWaitsForItsFigures creates a deployment
// of a model no node has and no catalog knows: it is accepted, flagged
// "model figures unknown", and placed once an operator registers the
// model.
func TestDeploymentOfAnUnknownModelWaitsForItsFigures(t *testing.T) {
	nodes := threeRegions(t)
	fr, de := nodes["fr"].URL(), nodes["de"].URL()
	st, _, raw := adminWith(t, "POST", fr+"/admin/v1/deployments", `{"name":"coder","model":"acme/coder:7b","replicas":2,"constraints":["jurisdiction=EU"]}`, nil)
	var created depView
	if st != http.StatusCreated || json.Unmarshal(raw, &created) != nil || created.Status != "invalid" || !strings.HasPrefix(created.Reason, "model figures unknown") {
		t.Fatalf("create: %d %s", st, raw)
	}
	d := waitDep(t, de, "coder", func(d depView) bool { return d.Status == "invalid" })
	if len(d.Placements) != 0 || !strings.Contains(d.Reason, `"acme/coder:7b" is neither built in nor registered`) {
		t.Fatalf("before registering: %+v", d)
	}
	if st, _, raw := adminWith(t, "POST", de+"/admin/v1/catalog", `{"name":"acme/coder:7b",`+coderFigures+`}`, nil); st != http.StatusCreated {
		t.Fatalf("register: %d %s", st, raw)
	}
	d = waitDep(t, fr, "coder", on("de", "fr"), never("us"))
	if !placedAll(d) {
		t.Fatalf("after registering: %+v", d)
	}
}

// TestNodesRegisterTheModelsTheyHave deploys a model no catalog knows but
// the nodes' Ollama holds: a node reads its figures from /api/show and
// registers them, and the deployment is placed without an operator.
func TestNodesRegisterTheModelsTheyHave(t *testing.T) {
	coder := ollamasim.ModelConfig{Name: "acme/coder:7b", Family: "qwen2", ParameterSize: "7.6B", Quantization: "Q4_K_M",
		Size: 4_683_073_184, ContextLength: 32768, EmbeddingLength: 3584, Layers: 28, Heads: 28, KVHeads: 4}
	sim := ollamasim.StartTest(t, ollamasim.Config{Models: []ollamasim.ModelConfig{coder}})
	a := testnode.Start(t, sim.URL(), placed("a", "1xA100:80GiB", "zone=a"))
	b := testnode.Start(t, sim.URL(), placed("b", "1xA100:80GiB", "zone=b", a.Addr()))
	labelNodes(t, a.URL(), "a", "b")
	waitView(t, a.URL(), allReady(2))
	waitGPUs(t, a.URL(), 2)
	create(t, b.URL(), `{"name":"coder","model":"Acme/Coder:7B","replicas":2}`)
	d := waitDep(t, a.URL(), "coder", func(d depView) bool { return d.Settled && d.ReadyReplicas == 2 })
	if d.Status != "ok" || !slices.Equal(nodesOf(d), []string{"a", "b"}) {
		t.Fatalf("deployment %+v", d)
	}
	var m catalogModel
	if st := admin(t, "GET", b.URL()+"/admin/v1/catalog/acme/coder:7b", "", &m); st != http.StatusOK ||
		m.Builtin || !strings.HasPrefix(m.Source, "Ollama /api/show on node ") || m.Layers != 28 || m.KVHeads != 4 || m.HeadDimK != 128 {
		t.Fatalf("registered entry %d %+v", st, m)
	}
}
