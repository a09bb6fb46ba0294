package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// fastScheduling makes the leader schedule quickly and give a down node
// a short grace.
var fastScheduling = cluster.SchedulingConfig{Debounce: 20 * time.Millisecond, Interval: 500 * time.Millisecond, DownGrace: 2 * time.Second}

// placed is a member with a GPU inventory, labels and a fast scheduler.
func placed(id, gpuSpec, labels string, join ...string) func(*node.Config) {
	return func(c *node.Config) {
		member(id, join...)(c)
		c.Cluster.GPUs = gpuSpec
		c.Cluster.Labels = map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			c.Cluster.Labels[k] = v
		}
		c.Cluster.DownAfter = 1500 * time.Millisecond
		c.Cluster.Scheduling = fastScheduling
	}
}

// depView is a deployment as GET /admin/v1/deployments/{name} shows it.
type depView = client.Deployment

// nodesOf lists the nodes of a deployment's placements.
func nodesOf(d depView) []string {
	var out []string
	for _, p := range d.Placements {
		out = append(out, p.Node)
	}
	return out
}

// apiError is the error body of the admin API.
type apiError struct {
	Error struct {
		Code  string `json:"code"`
		Param string `json:"param"`
	} `json:"error"`
}

// adminWith is admin with request headers; it also returns the response
// headers and body.
func adminWith(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testnode.Token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return send(t, req)
}

// send does req and returns the answer's status, headers and whole body;
// it sends the management token unless req has an Authorization header.
func send(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := testauth.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// waitDep polls a deployment until ok holds; every view seen is also
// passed to each of always, which fails the test on a forbidden state.
func waitDep(t *testing.T, url, name string, ok func(depView) bool, always ...func(*testing.T, depView)) depView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var d depView
		st := admin(t, "GET", url+"/admin/v1/deployments/"+name, "", &d)
		for _, a := range always {
			a(t, d)
		}
		if st == http.StatusOK && ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s never reached the expected state; last (%d) %+v", name, st, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// placedAll holds when the scheduler placed every replica, ready or not.
func placedAll(d depView) bool {
	return d.Status == "ok" || d.Status == "degraded" || d.Status == "unavailable"
}

// on holds when the deployment's placements are exactly these nodes and
// the scheduler has nothing more to do.
func on(nodes ...string) func(depView) bool {
	return func(d depView) bool { return d.Settled && slices.Equal(nodesOf(d), nodes) }
}

// never fails the test when a placement is on one of these nodes.
func never(nodes ...string) func(*testing.T, depView) {
	return func(t *testing.T, d depView) {
		t.Helper()
		for _, n := range nodesOf(d) {
			if slices.Contains(nodes, n) {
				t.Fatalf("deployment %s placed on %s: %+v", d.Name, n, d)
			}
		}
	}
}

// report stands in for the node's agent: it reports a replica's state.
func report(t *testing.T, n *node.Node, dep, on string, st state.PlacementState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := state.Command{Type: state.TypeReportPlacement, Body: state.ReportPlacement{Deployment: dep, Node: on, State: st}}
	if _, err := n.Cluster().Apply(ctx, cmd); err != nil {
		t.Fatalf("report %s on %s %s: %v", dep, on, st, err)
	}
}

// threeRegions starts fr (2×A100, EU), de (1×A100, EU) and us (2×H100,
// US), each in its own zone, and waits until they report their GPUs.
func threeRegions(t *testing.T, edit ...func(*node.Config)) map[string]*node.Node {
	t.Helper()
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	start := func(cfg func(*node.Config)) *node.Node {
		return testnode.Start(t, sim.URL(), append([]func(*node.Config){cfg}, edit...)...)
	}
	fr := start(placed("fr", "2xA100:80GiB", "jurisdiction=EU,country=FR,zone=a"))
	de := start(placed("de", "1xA100:80GiB", "jurisdiction=EU,country=DE,zone=b", fr.Addr()))
	us := start(placed("us", "2xH100:80GiB", "jurisdiction=US,country=US,zone=c", fr.Addr()))
	labelNodes(t, fr.URL(), "fr", "de", "us")
	nodes := map[string]*node.Node{"fr": fr, "de": de, "us": us}
	waitView(t, fr.URL(), allReady(3))
	waitGPUs(t, fr.URL(), 3)
	return nodes
}

// waitGPUs waits until n nodes have reported their GPUs.
func waitGPUs(t *testing.T, url string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list struct{ Nodes []state.Node }
		admin(t, "GET", url+"/admin/v1/nodes", "", &list)
		withGPUs := 0
		for _, n := range list.Nodes {
			if len(n.GPUs) > 0 {
				withGPUs++
			}
		}
		if withGPUs == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes never reported their GPUs: %+v", list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func create(t *testing.T, url, body string) {
	t.Helper()
	if st, _, raw := adminWith(t, "POST", url+"/admin/v1/deployments", body, nil); st != http.StatusCreated {
		t.Fatalf("create %s: %d %s", body, st, raw)
	}
}

// TestDeploymentsArePlacedByTheLeader drives deployments through the admin
// API of a three-node cluster and checks what the leader's scheduler makes
// of them: placements on feasible nodes only, scaling, explanations,
// reasons for what cannot be placed, idempotent creation, cordon with
// make-before-break, and deletion.
func TestDeploymentsArePlacedByTheLeader(t *testing.T) {
	nodes := threeRegions(t)
	fr, de, us := nodes["fr"].URL(), nodes["de"].URL(), nodes["us"].URL()

	t.Run("EU-only replicas stay in the EU", func(t *testing.T) {
		create(t, us, `{"name":"chat-eu","model":"llama3.1:8b","replicas":2,"constraints":["jurisdiction=EU"]}`)
		d := waitDep(t, de, "chat-eu", func(d depView) bool { return on("de", "fr")(d) && d.ReadyReplicas == 2 }, never("us"))
		if d.Status != "ok" || d.Model != "llama3.1:8b" || d.Version != 1 {
			t.Fatalf("view %+v", d)
		}
		create(t, de, `{"name":"chat-fr","model":"llama3.2:1b","constraints":["country in (FR)"]}`)
		waitDep(t, us, "chat-fr", on("fr"), never("de", "us"))
	})
	t.Run("scale up and down", func(t *testing.T) {
		if st, _, raw := adminWith(t, "POST", fr+"/admin/v1/deployments/chat-eu/scale", `{"replicas":3}`, nil); st != http.StatusOK {
			t.Fatalf("scale: %d %s", st, raw)
		}
		d := waitDep(t, us, "chat-eu", func(d depView) bool { return d.Replicas == 3 && on("de", "fr")(d) }, never("us"))
		if d.Status != "partial" || !strings.Contains(d.Reason, "2 of 3 replicas placed") || !strings.Contains(d.Reason, "jurisdiction=EU") {
			t.Fatalf("status %s %q", d.Status, d.Reason)
		}
		if st, _, raw := adminWith(t, "PATCH", de+"/admin/v1/deployments/chat-eu/scale", `{"replicas":1}`, nil); st != http.StatusOK {
			t.Fatalf("scale: %d %s", st, raw)
		}
		d = waitDep(t, fr, "chat-eu", func(d depView) bool {
			return d.Replicas == 1 && d.Settled && len(d.Placements) == 1 && d.ReadyReplicas == 1
		}, never("us"))
		if d.Status != "ok" || d.Version != 3 {
			t.Fatalf("after scale down %+v", d)
		}
	})
	t.Run("explain says why for every node", func(t *testing.T) {
		st, _, raw := adminWith(t, "GET", us+"/admin/v1/deployments/chat-fr/explain?format=text", "", nil)
		text := string(raw)
		for _, want := range []string{"deployment chat-fr (llama3.2:1b", "country in (FR)", "fr ", "holds", "us ", "rejected labels", "de "} {
			if st != http.StatusOK || !strings.Contains(text, want) {
				t.Fatalf("explain %d lacks %q:\n%s", st, want, text)
			}
		}
		var e struct {
			Status string
			Nodes  []struct{ Node, Verdict, Filter string }
			Text   string
		}
		if st := admin(t, "GET", de+"/admin/v1/deployments/chat-fr/explain", "", &e); st != http.StatusOK || len(e.Nodes) != 3 || e.Text == "" {
			t.Fatalf("explain json %d %+v", st, e)
		}
		if st := admin(t, "GET", de+"/admin/v1/deployments/nope/explain", "", nil); st != http.StatusNotFound {
			t.Fatalf("explain of an unknown deployment: %d", st)
		}
	})
	t.Run("unplaceable deployments carry their reason", func(t *testing.T) {
		create(t, fr, `{"name":"huge","model":"deepseek-v3:671b"}`)
		d := waitDep(t, de, "huge", func(d depView) bool { return d.Status == "unplaceable" })
		if len(d.Placements) != 0 || !strings.Contains(d.Reason, "VRAM") {
			t.Fatalf("huge: %+v", d)
		}
		create(t, fr, `{"name":"japan","model":"llama3.2:1b","constraints":["country=JP"]}`)
		d = waitDep(t, us, "japan", func(d depView) bool { return d.Status == "unplaceable" })
		if !strings.Contains(d.Reason, "3 fail country=JP") {
			t.Fatalf("japan: %+v", d)
		}
		var list struct{ Deployments []depView }
		if st := admin(t, "GET", de+"/admin/v1/deployments?stale=true", "", &list); st != http.StatusOK || len(list.Deployments) < 3 {
			t.Fatalf("list: %d %+v", st, list)
		}
	})
	t.Run("an idempotency key replays the first answer", func(t *testing.T) {
		body := `{"name":"once","model":"mistral:7b","replicas":0}`
		key := map[string]string{"Idempotency-Key": "create-once-1"}
		st1, h1, raw1 := adminWith(t, "POST", fr+"/admin/v1/deployments", body, key)
		st2, h2, raw2 := adminWith(t, "POST", us+"/admin/v1/deployments", body, key)
		if st1 != http.StatusCreated || st2 != http.StatusCreated || string(raw1) != string(raw2) {
			t.Fatalf("first %d %s, replay %d %s", st1, raw1, st2, raw2)
		}
		if h1.Get("Idempotent-Replayed") != "" || h2.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replayed headers %q %q", h1.Get("Idempotent-Replayed"), h2.Get("Idempotent-Replayed"))
		}
		var e apiError
		if st, _, raw := adminWith(t, "POST", fr+"/admin/v1/deployments", body, nil); st != http.StatusConflict || json.Unmarshal(raw, &e) != nil || e.Error.Code != "conflict" {
			t.Fatalf("create without the key: %d %s", st, raw)
		}
	})
	t.Run("drain moves replicas make-before-break", func(t *testing.T) {
		drainMovesReplicas(t, nodes)
	})
	t.Run("delete", func(t *testing.T) {
		if st, _, raw := adminWith(t, "DELETE", de+"/admin/v1/deployments/chat-eu", "", nil); st != http.StatusOK {
			t.Fatalf("delete: %d %s", st, raw)
		}
		if st := admin(t, "GET", fr+"/admin/v1/deployments/chat-eu", "", nil); st != http.StatusNotFound {
			t.Fatalf("GET after delete: %d", st)
		}
		if st := admin(t, "DELETE", us+"/admin/v1/deployments/chat-eu", "", nil); st != http.StatusNotFound {
			t.Fatalf("second delete: %d", st)
		}
	})
}

// drainMovesReplicas drains the node of a ready replica: a replacement
// is placed elsewhere, and the old replica leaves only once it is ready
// (the nodes' agents load the model and report it).
func drainMovesReplicas(t *testing.T, nodes map[string]*node.Node) {
	url := nodes["us"].URL()
	create(t, url, `{"name":"moving","model":"llama3.2:1b","constraints":["jurisdiction=EU"]}`)
	d := waitDep(t, url, "moving", func(d depView) bool { return d.Settled && len(d.Placements) == 1 && d.ReadyReplicas == 1 })
	from := d.Placements[0].Node
	to := map[string]string{"fr": "de", "de": "fr"}[from]

	if st, _, raw := adminWith(t, "POST", url+"/admin/v1/nodes/"+from+"/drain", `{"reason":"maintenance"}`, nil); st != http.StatusOK {
		t.Fatalf("drain: %d %s", st, raw)
	}
	waitDep(t, url, "moving", func(d depView) bool { return on(to)(d) && d.ReadyReplicas == 1 }, never("us"), keepsReady(1))

	if st, _, raw := adminWith(t, "POST", url+"/admin/v1/nodes/"+from+"/uncordon", "", nil); st != http.StatusOK {
		t.Fatalf("uncordon: %d %s", st, raw)
	}
	var n state.Node
	if admin(t, "GET", url+"/admin/v1/nodes/"+from, "", &n); n.Status != state.NodeReady {
		t.Fatalf("after uncordon: %+v", n)
	}
	if st := admin(t, "POST", url+"/admin/v1/nodes/nope/drain", "", nil); st != http.StatusNotFound {
		t.Fatalf("drain of an unknown node: %d", st)
	}
}

// TestDeploymentRequestsAreChecked sends requests the admin API refuses.
func TestDeploymentRequestsAreChecked(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	n := testnode.Start(t, sim.URL(), placed("solo", "1xL40S:48GiB", "jurisdiction=EU"))
	labelNodes(t, n.URL(), "solo")
	waitView(t, n.URL(), allReady(1))
	cases := []struct {
		name, method, path, body string
		status                   int
		param                    string
	}{
		{"bad name", "POST", "/deployments", `{"name":"Bad Name","model":"llama3.2:1b"}`, 400, "name"},
		{"no model", "POST", "/deployments", `{"name":"a"}`, 400, "model"},
		{"model name Ollama refuses", "POST", "/deployments", `{"name":"a","model":"no such:1b"}`, 400, "model"},
		{"negative replicas", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","replicas":-1}`, 400, "replicas"},
		{"too many replicas", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","replicas":1000000000}`, 400, "replicas"},
		{"bad constraint", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","constraints":["country in (FR"]}`, 400, "constraints"},
		{"bad spread key", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","spread_by":"zone=a"}`, 400, "spread_by"},
		{"wrong type", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","replicas":"two"}`, 400, "replicas"},
		{"bad idle timeout", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","idle_timeout":"soon"}`, 400, "idle_timeout"},
		{"negative idle timeout", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","idle_timeout":-5}`, 400, "idle_timeout"},
		{"idle timeout below a second", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","idle_timeout":"1500ms"}`, 400, "idle_timeout"},
		{"idle timeout of a wrong type", "POST", "/deployments", `{"name":"a","model":"llama3.2:1b","idle_timeout":true}`, 400, "idle_timeout"},
		{"scale without replicas", "POST", "/deployments/a/scale", `{}`, 400, "replicas"},
		{"scale unknown", "POST", "/deployments/nope/scale", `{"replicas":2}`, 404, "name"},
		{"get unknown", "GET", "/deployments/nope", ``, 404, "name"},
		{"uncordon unknown", "POST", "/nodes/nope/uncordon", ``, 404, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, _, raw := adminWith(t, tc.method, n.URL()+"/admin/v1"+tc.path, tc.body, nil)
			var e apiError
			_ = json.Unmarshal(raw, &e)
			if st != tc.status || e.Error.Param != tc.param {
				t.Fatalf("got %d %s, want %d with param %q", st, raw, tc.status, tc.param)
			}
		})
	}
	t.Run("catalog", func(t *testing.T) {
		var cat struct {
			Models []struct {
				Name        string `json:"name"`
				Builtin     bool   `json:"builtin"`
				Context     int    `json:"context"`
				MemoryBytes uint64 `json:"memory_bytes"`
			}
		}
		if st := admin(t, "GET", n.URL()+"/admin/v1/catalog", "", &cat); st != http.StatusOK || len(cat.Models) < 20 {
			t.Fatalf("catalog: %d %d models", st, len(cat.Models))
		}
		for _, m := range cat.Models {
			if m.Name == "llama3.1:8b" && (!m.Builtin || m.Context != 8192 || m.MemoryBytes < 4<<30 || m.MemoryBytes > 8<<30) {
				t.Fatalf("llama3.1:8b: %+v", m)
			}
		}
	})
}

// TestReplicaOfALostNodeMovesAfterTheGrace stops the node that holds a
// ready replica: the leader marks it down and, once the grace is over,
// places the replica on the other eligible node.
func TestReplicaOfALostNodeMovesAfterTheGrace(t *testing.T) {
	nodes := threeRegions(t)
	create(t, nodes["us"].URL(), `{"name":"survivor","model":"llama3.2:1b","constraints":["jurisdiction=EU"]}`)
	d := waitDep(t, nodes["us"].URL(), "survivor", func(d depView) bool { return d.Settled && len(d.Placements) == 1 })
	lost := d.Placements[0].Node
	to := map[string]string{"fr": "de", "de": "fr"}[lost]
	report(t, nodes["us"], "survivor", lost, state.PlacementReady)
	waitDep(t, nodes["us"].URL(), "survivor", func(d depView) bool { return d.ReadyReplicas == 1 })

	if err := nodes[lost].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := nodes["us"].URL()
	waitDep(t, url, "survivor", on(to), never("us"))
	var n state.Node
	if admin(t, "GET", url+"/admin/v1/nodes/"+lost, "", &n); n.Status != state.NodeDown {
		t.Fatalf("the lost node is %s", n.Status)
	}
	if since := time.Since(time.UnixMilli(n.StatusSince)); since < fastScheduling.DownGrace {
		t.Fatalf("the replica moved %v after the node went down, within the grace of %v", since, fastScheduling.DownGrace)
	}
}
