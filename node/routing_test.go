package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/router"
	loadview "github.com/sovra/sovra/node/router/load"
)

// Models of the routing tests' simulated Ollamas: the default set, plus
// llama3.1:8b answering, after ttft, at 40 tokens a second for 400
// tokens: a stream that lasts ten seconds unless cut.
const (
	fastModel = "llama3.2:1b"
	slowModel = "llama3.1:8b"
)

func routingModels(ttft time.Duration) []ollamasim.ModelConfig {
	return append(ollamasim.DefaultModels(), ollamasim.ModelConfig{
		Name: slowModel, Family: "llama", ParameterSize: "8.0B", Quantization: "Q4_K_M",
		Size: 4_920_753_328, ResponseTokens: 400, TokensPerSecond: 40, TTFT: ttft,
	})
}

// served counts the chats each simulated Ollama received, by node id.
func (c *simCluster) served(model string) map[string]int {
	out := map[string]int{}
	for id, s := range c.sims {
		out[id] = chats(s, model)
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// routeReasons are the values Sovra-Route may take.
var routeReasons = []string{"ttf", "affinity", "round-robin", "least-connections", "only"}

// checkRoutingHeaders checks the routing headers of an answer for model
// that node served after attempts tries.
func checkRoutingHeaders(t *testing.T, h http.Header, model, node string, attempts int) {
	t.Helper()
	if got := h.Get("Sovra-Node"); got != node {
		t.Errorf("Sovra-Node %q, want %q", got, node)
	}
	if got, want := h.Get("Sovra-Replica"), model+"@"+node; got != want {
		t.Errorf("Sovra-Replica %q, want %q", got, want)
	}
	if got := h.Get("Sovra-Route"); !slices.Contains(routeReasons, got) {
		t.Errorf("Sovra-Route %q, want one of %v", got, routeReasons)
	}
	if got := h.Get("Sovra-Attempts"); got != strconv.Itoa(attempts) {
		t.Errorf("Sovra-Attempts %q, want %d", got, attempts)
	}
	if ms, err := strconv.ParseFloat(h.Get("Sovra-Queue-Ms"), 64); err != nil || ms < 0 || math.IsNaN(ms) {
		t.Errorf("Sovra-Queue-Ms %q: %v", h.Get("Sovra-Queue-Ms"), err)
	}
}

// TestRoutingAcrossNodes runs three nodes, each over its own simulated
// Ollama named after it, with a deployment replicated on all three
// ("chat") and one on c alone ("long", whose answers stream for seconds).
func TestRoutingAcrossNodes(t *testing.T) {
	sim := ollamasim.Config{Models: routingModels(0)}
	c := startSimCluster(t, []simNode{{id: "a", sim: sim}, {id: "b", sim: sim}, {id: "c", sim: sim}})
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":3}`, "a", "b", "c")
	c.deploy(t, `{"name":"long","model":"`+slowModel+`","replicas":1,"constraints":["zone=c"]}`, "c")

	t.Run("every node serves every deployment and says where", func(t *testing.T) {
		deps := []struct {
			name, model string
			on          []string // the nodes that may serve it
		}{
			{"chat", fastModel, []string{"a", "b", "c"}},
			{"long", slowModel, []string{"c"}},
		}
		for _, d := range deps {
			for _, entry := range c.ids {
				for _, s := range chatShapes {
					t.Run(d.name+"/"+entry+"/"+s.name, func(t *testing.T) {
						before := c.served(d.model)
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						defer cancel()
						a, err := call{url: c.url(entry), shape: s, body: s.body(d.name, "hello from "+entry, 4)}.do(ctx)
						if err != nil {
							t.Fatal(err)
						}
						if err := a.complete(s); err != nil {
							t.Fatal(err)
						}
						servedBy := a.header.Get("Sovra-Node")
						if !slices.Contains(d.on, servedBy) {
							t.Fatalf("served by %q, want one of %v", servedBy, d.on)
						}
						checkRoutingHeaders(t, a.header, d.model, servedBy, 1)
						// The simulator that logged the chat is the one
						// the headers name, and no other logged one.
						var after map[string]int
						testwait.Until(t, 5*time.Second, func() bool {
							after = c.served(d.model)
							return total(after) > total(before)
						}, func() string { return fmt.Sprintf("no simulator logged the chat: %v", after) })
						for _, id := range c.ids {
							want := before[id]
							if id == servedBy {
								want++
							}
							if after[id] != want {
								t.Errorf("simulator %s logged %d chats, want %d (Sovra-Node %s)", id, after[id]-before[id], want-before[id], servedBy)
							}
						}
					})
				}
			}
		}
	})

	t.Run("a stream cut after its first byte ends in band across a hop", func(t *testing.T) {
		if err := c.sims["c"].SetFaults(ollamasim.Faults{Drop: true, DropAfter: 3, Model: slowModel}); err != nil {
			t.Fatal(err)
		}
		defer c.sims["c"].ClearFaults()
		for _, entry := range []string{"a", "b"} {
			for _, s := range []shape{openAIChatStream, ollamaChatStream} {
				t.Run(entry+"/"+s.name, func(t *testing.T) {
					dropped := c.sims["c"].Stats().Dropped
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					a, err := call{url: c.url(entry), shape: s, body: s.body("long", "cut me", 0)}.do(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if !a.cutInBand() || a.readErr != nil {
						t.Fatalf("want a started stream ended by an in-band error and no end marker; got status %d, %d frames, done %v, error %q, read error %v",
							a.status, a.frames, a.done, a.inBand, a.readErr)
					}
					if got := a.header.Get("Sovra-Node"); got != "c" {
						t.Errorf("Sovra-Node %q, want c (a forward)", got)
					}
					wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer wcancel()
					_ = c.sims["c"].WaitFor(wctx, func(st ollamasim.Stats) bool { return st.Dropped > dropped })
					if got := c.sims["c"].Stats().Dropped; got != dropped+1 {
						t.Errorf("the simulator on c dropped %d streams, want 1", got-dropped)
					}
				})
			}
		}
	})

	t.Run("a hang-up frees the remote backend promptly", func(t *testing.T) {
		sim := c.sims["c"]
		for _, stalled := range []bool{true, false} {
			for _, s := range []shape{openAIChatStream, ollamaChatStream} {
				name := map[bool]string{true: "stalled", false: "streaming"}[stalled] + "/" + s.name
				t.Run(name, func(t *testing.T) {
					if stalled {
						// Nothing more comes: only the hang-up can end it.
						if err := sim.SetFaults(ollamasim.Faults{Stall: true, StallAfter: 1, Model: slowModel}); err != nil {
							t.Fatal(err)
						}
						defer sim.ClearFaults()
					}
					cancelled := sim.Stats().Cancelled
					var hungUp time.Time
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					a, err := call{url: c.url("a"), shape: s, body: s.body("long", "a long story", 0),
						firstFrame: func() bool { hungUp = time.Now(); return false }}.do(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if a.status != http.StatusOK || hungUp.IsZero() || a.header.Get("Sovra-Node") != "c" {
						t.Fatalf("no first frame from c: %d %s %v", a.status, a.body, a.header)
					}
					wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer wcancel()
					if err := sim.WaitFor(wctx, func(st ollamasim.Stats) bool { return st.Cancelled > cancelled }); err != nil {
						t.Fatalf("the simulator on c never saw the hang-up: %+v", sim.Stats())
					}
					recs := sim.Cancellations()
					last := recs[len(recs)-1]
					if d := last.End.Sub(hungUp); d > hangupBound {
						t.Errorf("the hang-up reached the remote backend after %v, want within %v", d, hangupBound)
					}
					if last.Chunks >= 400 {
						t.Errorf("the cancelled stream ran to its end (%d chunks)", last.Chunks)
					}
					testwait.Until(t, 10*time.Second, func() bool {
						return metric(t, c.url("c"), "sovra_running_requests", "model="+slowModel) == 0
					}, func() string { return "node c still counts the request as running" })
				})
			}
		}
	})

	t.Run("forward routes need a cluster certificate", func(t *testing.T) {
		chatBody := ollamaChat.body(slowModel, "forwarded", 2)
		clients := peerClients(t, c.nodes["b"])
		cases := []struct {
			name, method, path, body, who string
			want                          int
		}{
			{"chat in plain HTTP", "POST", "/internal/v1/forward/api/chat", chatBody, "plain", http.StatusForbidden},
			{"chat without a certificate", "POST", "/internal/v1/forward/api/chat", chatBody, "none", http.StatusForbidden},
			{"chat with another CA's certificate", "POST", "/internal/v1/forward/api/chat", chatBody, "stranger", http.StatusForbidden},
			{"generate without a certificate", "POST", "/internal/v1/forward/api/generate", `{"model":"` + slowModel + `","prompt":"x","stream":false}`, "none", http.StatusForbidden},
			{"embed with another CA's certificate", "POST", "/internal/v1/forward/api/embed", `{"model":"nomic-embed-text","input":"x"}`, "stranger", http.StatusForbidden},
			{"show without a certificate", "POST", "/internal/v1/forward/api/show", `{"model":"` + slowModel + `"}`, "none", http.StatusForbidden},
			{"load without a certificate", "GET", "/internal/v1/load", "", "none", http.StatusForbidden},
			{"load with another CA's certificate", "GET", "/internal/v1/load", "", "stranger", http.StatusForbidden},
			{"load feed without a certificate", "GET", "/internal/v1/load?watch=1", "", "none", http.StatusForbidden},
			{"load feed with another CA's certificate", "GET", "/internal/v1/load?watch=1", "", "stranger", http.StatusForbidden},
			{"chat from a peer", "POST", "/internal/v1/forward/api/chat", chatBody, "peer", http.StatusOK},
			{"show from a peer", "POST", "/internal/v1/forward/api/show", `{"model":"` + slowModel + `"}`, "peer", http.StatusOK},
			{"load from a peer", "GET", "/internal/v1/load", "", "peer", http.StatusOK},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := c.served(slowModel)
				url := "https://" + c.nodes["a"].Addr() + tc.path
				if tc.who == "plain" {
					url = c.url("a") + tc.path
				}
				req, _ := http.NewRequest(tc.method, url, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := clients[tc.who].Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if st := resp.StatusCode; st != tc.want {
					t.Fatalf("status %d, want %d: %s", st, tc.want, raw)
				}
				switch {
				case tc.want == http.StatusForbidden:
					if !strings.Contains(string(raw), "certificate of the cluster CA") {
						t.Errorf("refusal %s", raw)
					}
					if after := c.served(slowModel); total(after) != total(before) {
						t.Errorf("a refused call reached a backend: %v -> %v", before, after)
					}
				case strings.HasSuffix(tc.path, "/chat"):
					// Served where it landed, although the deployment's
					// only replica is on c: never forwarded again.
					testwait.Until(t, 5*time.Second, func() bool { return chats(c.sims["a"], slowModel) == before["a"]+1 },
						func() string { return "a's own Ollama never served the forwarded chat" })
					if after := c.served(slowModel); after["c"] != before["c"] || after["b"] != before["b"] {
						t.Errorf("a forwarded chat was forwarded again: %v -> %v", before, after)
					}
				case tc.path == "/internal/v1/load":
					var ex struct {
						Node   string
						Models map[string]struct{ Slots int }
					}
					if err := json.Unmarshal(raw, &ex); err != nil || ex.Node != "a" || ex.Models[fastModel].Slots < 1 {
						t.Errorf("load exchange %s: %v", raw, err)
					}
				}
			})
		}
	})

	t.Run("operators see what routing sees", func(t *testing.T) {
		type view struct {
			Policy   string `json:"policy"`
			Replicas []struct {
				Deployment, Node, Health, Breaker string
				Local                             bool
				Slots                             int
			} `json:"replicas"`
		}
		var v view
		testwait.Until(t, 5*time.Second, func() bool {
			v = view{}
			if admin(t, "GET", c.url("a")+"/admin/v1/routing", "", &v) != http.StatusOK || len(v.Replicas) != 4 {
				return false
			}
			for _, r := range v.Replicas {
				if r.Health != "fresh" || r.Breaker != "closed" || r.Slots < 1 || r.Local != (r.Node == "a") {
					return false
				}
			}
			return true
		}, func() string { return fmt.Sprintf("a's routing view: %+v", v) })
		if v.Policy != "ttf" || v.Replicas[0].Deployment != "chat" || v.Replicas[3].Deployment != "long" || v.Replicas[3].Node != "c" {
			t.Fatalf("a's routing view: %+v", v)
		}
		req, _ := http.NewRequest("GET", c.url("a")+"/admin/v1/routing", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("routing view without the token: %d", resp.StatusCode)
		}
	})

	t.Run("idle peers keep each other fresh with keepalives", func(t *testing.T) {
		// Nothing changes on a: its feed still sends its report at
		// least every second, so b's copy never gets older than the
		// two seconds after which it would be Unknown, and it is
		// renewed (its age drops) again and again.
		view := c.nodes["b"].Router().View()
		renewed, last := 0, time.Duration(0)
		for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(50 * time.Millisecond) {
			l := view.Load("a", fastModel)
			if l.Health != loadview.Fresh {
				t.Fatalf("b sees a %v (report %v old)", l.Health, l.Age)
			}
			if l.Age < last {
				renewed++
			}
			last = l.Age
		}
		if renewed < 2 {
			t.Errorf("b's report of idle a was renewed %d times in 3s, want at least twice", renewed)
		}
	})

	t.Run("a change reaches every peer while it lasts", func(t *testing.T) {
		// "long" streams for seconds on c: a and b see it running there
		// while it does, and see it end.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			// No token bound: 400 tokens at 40 a second, cut below.
			_, err := call{url: c.url("c"), shape: openAIChatStream, body: openAIChatStream.body("long", "push", 0)}.do(ctx)
			done <- err
		}()
		for _, id := range []string{"a", "b"} {
			view := c.nodes[id].Router().View()
			testwait.Until(t, 5*time.Second, func() bool { return view.Load("c", slowModel).Running == 1 },
				func() string { return fmt.Sprintf("%s's view of c: %+v", id, view.Load("c", slowModel)) })
		}
		cancel()
		<-done
		for _, id := range []string{"a", "b"} {
			view := c.nodes[id].Router().View()
			testwait.Until(t, 5*time.Second, func() bool { return view.Load("c", slowModel).Running == 0 },
				func() string { return fmt.Sprintf("%s's view of c after the end: %+v", id, view.Load("c", slowModel)) })
		}
	})
}

// TestRoutingSurvivesAKilledReplica kills one node's Ollama while clients
// stream and wait for chats through all three nodes: no request that had
// not received its first byte fails; the few streams that were running
// on the killed Ollama end with an in-band error event; the others were
// retried elsewhere. The victim's node looks at its Ollama again after the
// failures and reports its replica failed, with no periodic resync to help.
func TestRoutingSurvivesAKilledReplica(t *testing.T) {
	sim := ollamasim.Config{TokensPerSecond: 200, ResponseTokens: 16}
	c := startSimCluster(t, []simNode{{id: "a", sim: sim}, {id: "b", sim: sim}, {id: "c", sim: sim}},
		func(cfg *node.Config) { cfg.Cluster.ResyncInterval = time.Hour })
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":3}`, "a", "b", "c")

	const victim = "b"
	l := startChatLoad(c.ids, c.url, "chat", 6, 0, nil)
	t.Cleanup(func() { l.stop() })
	l.waitCompleted(t, time.Time{}, 24)
	if got := c.served(fastModel)[victim]; got == 0 {
		t.Fatalf("the victim served nothing before the kill: %v", c.served(fastModel))
	}
	killed := time.Now()
	if err := c.sims[victim].SetRefuse(true); err != nil {
		t.Fatal(err)
	}
	l.waitCompleted(t, killed, 48)
	outcomes := l.stop()

	failed, cut, retried := judgeKill(outcomes, victim, killed)
	retries := 0.0
	for _, id := range c.ids {
		retries += metric(t, c.url(id), "sovra_routing_retries_total", "model="+fastModel)
	}
	t.Logf("%d requests, %d streams cut in band by the kill, %d answers after a retry, %v retries counted",
		len(outcomes), cut, retried, retries)
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed:\n%s", len(failed), len(outcomes), strings.Join(failed, "\n"))
	}
	if retries == 0 || retried == 0 {
		t.Errorf("no request was retried (%v retries counted, %d answers said Sovra-Attempts > 1)", retries, retried)
	}
	waitDep(t, c.url(c.ids[0]), "chat", func(v depView) bool {
		for _, p := range v.Placements {
			if p.Node == victim {
				return p.State == string(state.PlacementFailed)
			}
		}
		return false
	})
}

// TestResidencyKeepsRequestsInTheirJurisdiction runs two EU nodes and a US
// node with a deployment replicated on all three. Requests that allow
// only the EU, entering every node, never reach the US node's Ollama, as
// the simulators' own logs show; a jurisdiction without a replica, or a
// malformed header, is the client's error.
func TestResidencyKeepsRequestsInTheirJurisdiction(t *testing.T) {
	c := startSimCluster(t, []simNode{
		{id: "eu1", labels: "jurisdiction=EU"}, {id: "eu2", labels: "jurisdiction=EU"}, {id: "us", labels: "jurisdiction=US"},
	})
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":3}`, "eu1", "eu2", "us")
	eu := []string{"eu1", "eu2"}

	t.Run("EU-only requests never reach the US Ollama", func(t *testing.T) {
		before := c.served(fastModel)
		const requests = 24
		l := startChatLoad(c.ids, c.url, "chat", 3, 0, map[string]string{"Sovra-Jurisdiction": "EU"})
		l.waitCompleted(t, time.Time{}, requests)
		outcomes := l.stop()
		for _, o := range outcomes {
			if o.err != nil {
				t.Fatalf("%s via %s: %v", o.shape.name, o.entry, o.err)
			}
			if err := o.answer.complete(o.shape); err != nil {
				t.Fatalf("%s via %s: %v", o.shape.name, o.entry, err)
			}
			if n := o.answer.header.Get("Sovra-Node"); !slices.Contains(eu, n) {
				t.Errorf("%s via %s served by %q", o.shape.name, o.entry, n)
			}
		}
		var after map[string]int
		testwait.Until(t, 5*time.Second, func() bool {
			after = c.served(fastModel)
			return total(after)-total(before) >= len(outcomes)
		}, func() string { return fmt.Sprintf("the simulators logged %v chats, want %d", after, len(outcomes)) })
		if n := after["us"] - before["us"]; n != 0 {
			t.Errorf("the US Ollama logged %d of the EU-only chats", n)
		}
		if n := after["eu1"] + after["eu2"] - before["eu1"] - before["eu2"]; n != len(outcomes) {
			t.Errorf("the EU Ollamas logged %d chats, want %d", n, len(outcomes))
		}
	})

	t.Run("headers", func(t *testing.T) {
		cases := []struct {
			name, model, header string
			status              int
			code                string   // error code, when the status is not 200
			on                  []string // the nodes that may serve it, when 200
		}{
			{"a jurisdiction without replicas", "chat", "CH", http.StatusBadRequest, "residency_unsatisfiable", nil},
			{"two without replicas", "chat", "CH, JP", http.StatusBadRequest, "residency_unsatisfiable", nil},
			{"malformed", "chat", "EU;US", http.StatusBadRequest, "invalid_jurisdiction", nil},
			{"an empty list", "chat", " , ", http.StatusBadRequest, "invalid_jurisdiction", nil},
			{"lower case", "chat", "eu", http.StatusOK, "", eu},
			{"a list", "chat", "CH,US", http.StatusOK, "", []string{"us"}},
			// Not deployed: each node's own Ollama has it, and only
			// an EU node may use its own.
			{"a model only local Ollamas have", "deepseek-r1:1.5b", "EU", 0, "", nil},
		}
		for _, tc := range cases {
			for _, entry := range c.ids {
				t.Run(tc.name+"/"+entry, func(t *testing.T) {
					status, code, on := tc.status, tc.code, tc.on
					if status == 0 && entry == "us" {
						status, code = http.StatusBadRequest, "residency_unsatisfiable"
					} else if status == 0 {
						status, on = http.StatusOK, []string{entry}
					}
					before := c.served(tc.model)
					s := openAIChat
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					a, err := call{url: c.url(entry), shape: s, body: s.body(tc.model, "where am I", 4),
						header: map[string]string{"Sovra-Jurisdiction": tc.header}}.do(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if a.status != status || a.status != http.StatusOK && a.errorCode() != code {
						t.Fatalf("%d %s, want %d %s", a.status, a.body, status, code)
					}
					if status != http.StatusOK {
						if after := c.served(tc.model); total(after) != total(before) {
							t.Errorf("a refused request reached an Ollama: %v -> %v", before, after)
						}
						return
					}
					if n := a.header.Get("Sovra-Node"); !slices.Contains(on, n) {
						t.Errorf("served by %q, want one of %v", n, on)
					}
				})
			}
		}
	})
}

// admissionSetup is where an admission test sends its requests (entry)
// and where they queue: the node whose queue fills and its Ollama.
type admissionSetup struct {
	name             string
	entry, queueNode string // base URLs
	model            string
	sim              *ollamasim.Server
}

// admissionSetups are a node alone, and a two-node cluster whose only
// replica is on y, entered at y and (forwarded) at x. Every node has
// the given slots and queue bound over a simulated Ollama that takes a
// second per answer.
// admissionQueueTimeout is how long the admission tests' requests may
// queue. A refusal "at once" is one that comes long before it: a quarter
// of it, however slow the machine, is still far from an answer that
// waited out the queue.
const admissionQueueTimeout = 20 * time.Second

func admissionSetups(t *testing.T, slots, maxQueue int) []admissionSetup {
	slow := ollamasim.Config{TokensPerSecond: 20, ResponseTokens: 20}
	queue := func(c *node.Config) {
		c.Routing.Slots, c.Routing.MaxQueue, c.Routing.QueueTimeout = slots, maxQueue, admissionQueueTimeout
		c.Keys = clientKeys
	}
	alone := ollamasim.StartTest(t, slow)
	n := testnode.Start(t, alone.URL(), queue)
	c := startSimCluster(t, []simNode{{id: "x", sim: slow}, {id: "y", sim: slow}}, queue)
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":1,"constraints":["zone=y"]}`, "y")
	return []admissionSetup{
		{name: "alone", entry: n.URL(), queueNode: n.URL(), model: fastModel, sim: alone},
		{name: "at the replica", entry: c.url("y"), queueNode: c.url("y"), model: "chat", sim: c.sims["y"]},
		{name: "forwarded to it", entry: c.url("x"), queueNode: c.url("y"), model: "chat", sim: c.sims["y"]},
	}
}

// clientKeys are the API keys "a" and "b" of the admission tests' two
// clients (tenants, whose key ids are their fairness keys).
var clientKeys = auth.NewStaticKeys(map[string]auth.Principal{
	"a": {KeyID: "a", Role: auth.RoleUser}, "b": {KeyID: "b", Role: auth.RoleUser},
})

// ask sends a chat of the setup's model as API key key, in the
// background; the test waits for it to end before it ends.
func (s admissionSetup) ask(t *testing.T, key string) <-chan answer {
	ch, ended := make(chan answer, 1), make(chan struct{})
	t.Cleanup(func() { <-ended })
	go func() {
		defer close(ended)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a, err := call{url: s.entry, shape: openAIChat, body: openAIChat.body(s.model, "queue me", 0),
			header: map[string]string{"Authorization": "Bearer " + key}}.do(ctx)
		if err != nil {
			a = answer{status: -1, body: []byte(err.Error())}
		}
		ch <- a
	}()
	return ch
}

// awaitQueue waits until the queue node runs one request and queues n.
func (s admissionSetup) awaitQueue(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.sim.WaitFor(ctx, func(st ollamasim.Stats) bool { return st.Model(fastModel).Running == 1 }); err != nil {
		t.Fatalf("no request reached the Ollama: %+v", s.sim.Stats().Model(fastModel))
	}
	queued := func() float64 { return metric(t, s.queueNode, "sovra_queued_requests", "model="+fastModel) }
	testwait.Until(t, 10*time.Second, func() bool { return queued() == float64(n) },
		func() string { return fmt.Sprintf("%v requests queued, want %d", queued(), n) })
}

// refused checks an answer that admission control refused: the status,
// the error code and a Retry-After of at least a second.
func refused(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.errorCode() != code {
		t.Fatalf("%d %s, want %d %s", a.status, a.body, status, code)
	}
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", a.header.Get("Retry-After"))
	}
}

// TestAdmissionQueuesPerClientKey floods a model whose node runs one
// request at a time and queues two, from one API key: the key is turned
// away with 429 at once, long before the queue timeout, while a second
// key still gets its turn.
func TestAdmissionQueuesPerClientKey(t *testing.T) {
	for _, s := range admissionSetups(t, 1, 2) {
		t.Run(s.name, func(t *testing.T) {
			a1 := s.ask(t, "a")
			s.awaitQueue(t, 0)
			a2 := s.ask(t, "a")
			s.awaitQueue(t, 1)
			a3 := s.ask(t, "a")
			s.awaitQueue(t, 2)

			begin := time.Now()
			refused(t, <-s.ask(t, "a"), http.StatusTooManyRequests, "rate_limit_exceeded")
			if d := time.Since(begin); d > admissionQueueTimeout/4 {
				t.Errorf("the 429 took %v, want it long before the queue timeout (%v)", d, admissionQueueTimeout)
			}
			// Another key pushes the flooding key's newest waiter out: a3
			// is refused rather than served in its turn (about 2s on, when
			// a1 and a2 are done).
			b1 := s.ask(t, "b")
			select {
			case a := <-a3:
				refused(t, a, http.StatusTooManyRequests, "rate_limit_exceeded")
			case <-time.After(admissionQueueTimeout / 4):
				t.Fatal("the other key did not push the flooding key's newest request out")
			}
			for i, ch := range []<-chan answer{b1, a1, a2} {
				if a := <-ch; a.complete(openAIChat) != nil {
					t.Errorf("request %d: %v", i, a.complete(openAIChat))
				}
			}
		})
	}
}

// TestAdmissionWithoutAQueueAnswers503 gives the node no queue: a request
// that finds the one slot busy gets 503 server_overloaded at once.
func TestAdmissionWithoutAQueueAnswers503(t *testing.T) {
	for _, s := range admissionSetups(t, 1, 0) {
		t.Run(s.name, func(t *testing.T) {
			a1 := s.ask(t, "a")
			s.awaitQueue(t, 0)
			begin := time.Now()
			refused(t, <-s.ask(t, "b"), http.StatusServiceUnavailable, "server_overloaded")
			if d := time.Since(begin); d > admissionQueueTimeout/4 {
				t.Errorf("the 503 took %v, want it at once (long before a queue timeout of %v)", d, admissionQueueTimeout)
			}
			if a := <-a1; a.complete(openAIChat) != nil {
				t.Errorf("the running request: %v", a.complete(openAIChat))
			}
		})
	}
}

// failedChats counts the chats of model a simulated Ollama answered with
// its fail fault.
func failedChats(s *ollamasim.Server, model string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Endpoint == "/api/chat" && r.Model == model && r.Fault == ollamasim.FaultFail {
			n++
		}
	}
	return n
}

// TestBreakerLeavesAFailingReplicaOut runs two nodes that choose replicas
// round robin, so each would send every other request to b. b's Ollama
// answers 500 at once: after three failures each node leaves b out,
// clients see no failure, and after five seconds one probe brings b back
// once it is healthy. Clients that cancel do not trip a healthy replica.
func TestBreakerLeavesAFailingReplicaOut(t *testing.T) {
	const breakerOpen = 5 * time.Second
	sim := ollamasim.Config{Models: routingModels(2 * time.Second)}
	c := startSimCluster(t, []simNode{{id: "a", sim: sim}, {id: "b", sim: sim}},
		func(c *node.Config) { c.Routing.Policy = "round-robin" })
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":2}`, "a", "b")
	c.deploy(t, `{"name":"long","model":"`+slowModel+`","replicas":1,"constraints":["zone=b"]}`, "b")
	ask := func(t *testing.T, entry string, s shape, dep string, maxTokens int) answer {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a, err := call{url: c.url(entry), shape: s, body: s.body(dep, "breaker", maxTokens)}.do(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	var trippedOnA time.Time // when a's breaker for b opened, about
	t.Run("a replica failing at once is left out after three failures", func(t *testing.T) {
		if err := c.sims["b"].SetFaults(ollamasim.Faults{Fail: true, Model: fastModel}); err != nil {
			t.Fatal(err)
		}
		begin, retriedOnA := time.Now(), 0
		for i := range 24 {
			entry, s := c.ids[i%2], chatShapes[(i/2)%len(chatShapes)]
			a := ask(t, entry, s, "chat", 4)
			if err := a.complete(s); err != nil {
				t.Fatalf("%s via %s: %v", s.name, entry, err)
			}
			if n := a.header.Get("Sovra-Node"); n != "a" {
				t.Fatalf("%s via %s served by %q", s.name, entry, n)
			}
			if entry == "a" && a.header.Get("Sovra-Attempts") == "2" {
				if retriedOnA++; retriedOnA == 3 {
					trippedOnA = time.Now()
				}
			}
		}
		// Three failures per entry node, and a probe for every rest
		// that ended meanwhile.
		fails, probes := failedChats(c.sims["b"], fastModel), 2*int(time.Since(begin)/breakerOpen)
		if fails < 6 || fails > 6+probes {
			t.Errorf("b's Ollama failed %d chats, want 6 (+%d probes)", fails, probes)
		}
		for _, id := range c.ids {
			if n := metric(t, c.url(id), "sovra_breaker_trips_total", "node=b", "model="+fastModel); n < 1 {
				t.Errorf("node %s counts %v trips of b's breaker", id, n)
			}
		}
		if trippedOnA.IsZero() {
			t.Fatalf("a retried %d requests after b failed, want 3", retriedOnA)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("after the rest one probe brings the healed replica back", func(t *testing.T) {
		if err := c.sims["b"].ClearFaults(); err != nil {
			t.Fatal(err)
		}
		var back time.Time
		testwait.Until(t, 2*breakerOpen, func() bool {
			if ask(t, "a", openAIChat, "chat", 4).header.Get("Sovra-Node") == "b" {
				back = time.Now()
			}
			return !back.IsZero()
		}, func() string { return "b never served again" })
		if d := back.Sub(trippedOnA); d < breakerOpen-200*time.Millisecond || d > breakerOpen+2*time.Second {
			t.Errorf("b served again %v after a's breaker opened, want about %v", d, breakerOpen)
		}
	})

	t.Run("client cancellations do not trip a healthy replica", func(t *testing.T) {
		// b holds the only replica of long, whose first token comes
		// after two seconds: these clients give up before it.
		sim := c.sims["b"]
		cancelled := sim.Stats().Cancelled
		const clients = 5
		for i := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			a, err := call{url: c.url("a"), shape: openAIChatStream, body: openAIChatStream.body("long", "never mind", 4)}.do(ctx)
			cancel()
			if err == nil {
				t.Fatalf("client %d got an answer before it gave up: %d %s", i, a.status, a.body)
			}
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		if err := sim.WaitFor(wctx, func(st ollamasim.Stats) bool { return st.Cancelled >= cancelled+clients }); err != nil {
			t.Fatalf("b's Ollama saw %d cancellations, want %d", sim.Stats().Cancelled-cancelled, clients)
		}
		if n := metric(t, c.url("a"), "sovra_breaker_trips_total", "node=b", "model="+slowModel); n != 0 {
			t.Errorf("cancellations tripped b's breaker %v times", n)
		}
		a := ask(t, "a", openAIChat, "long", 2)
		if err := a.complete(openAIChat); err != nil || a.header.Get("Sovra-Node") != "b" {
			t.Errorf("after the cancellations: %v, served by %q", err, a.header.Get("Sovra-Node"))
		}
	})
}

// TestBusyReplicaSendsBackAForwardedRequest: node a runs one request at a
// time and its slot is taken. A peer forwarding it another request, and
// letting it send the request back, gets 503 sent_back at once, since b's
// replica is free; without that leave the request waits for a's slot.
func TestBusyReplicaSendsBackAForwardedRequest(t *testing.T) {
	slow := ollamasim.Config{TokensPerSecond: 20, ResponseTokens: 20}
	c := startSimCluster(t, []simNode{{id: "a", sim: slow}, {id: "b", sim: slow}},
		func(c *node.Config) { c.Routing.Slots = 1 })
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":2}`, "a", "b")
	view := c.nodes["a"].Router().View()
	testwait.For(t, 10*time.Second, "a to have b's load", func() bool {
		l := view.Load("b", fastModel)
		return l.Health == loadview.Fresh && l.Slots == 1 && l.Busy() == 0
	})
	peer := peerClients(t, c.nodes["b"])["peer"]
	forward := func(mayBounce bool) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", "https://"+c.nodes["a"].Addr()+"/internal/v1/forward/api/chat",
			strings.NewReader(ollamaChat.body(fastModel, "sent back?", 8)))
		req.Header.Set("Content-Type", "application/json")
		if mayBounce {
			req.Header.Set(api.HeaderMaySendBack, "1")
		}
		resp, err := peer.Do(req)
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, raw
	}
	held := make(chan int, 1)
	go func() {
		resp, _ := forward(true) // a's slot is free: served, not sent back
		if resp == nil {
			held <- -1
			return
		}
		held <- resp.StatusCode
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.sims["a"].WaitFor(ctx, func(st ollamasim.Stats) bool { return st.Model(fastModel).Running == 1 }); err != nil {
		t.Fatalf("the first request never reached a's Ollama: %v", err)
	}
	begin := time.Now()
	resp, raw := forward(true)
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(api.HeaderErrorCode) != router.SentBackCode {
		t.Fatalf("with a's slot taken and b free: %v %s, want 503 %s", resp, raw, router.SentBackCode)
	}
	if d := time.Since(begin); d > 500*time.Millisecond {
		t.Errorf("sent back after %v, want at once (a's request runs a second)", d)
	}
	if n := metric(t, c.url("a"), "sovra_admission_rejected_total", "reason="+router.SentBackCode); n != 1 {
		t.Errorf("a counted %v requests sent back, want 1", n)
	}
	if resp, raw := forward(false); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("without leave to send it back: %v %s, want it served after the first", resp, raw)
	}
	if st := <-held; st != http.StatusOK {
		t.Fatalf("the first request: %d", st)
	}
}
