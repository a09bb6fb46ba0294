package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// TestIdleDeploymentUnloadsAndWakes deploys a model that may go idle after
// a second: with no requests it goes idle and its Ollama unloads it; a
// request wakes it and is served once the model loads again, within the
// node's wake bound; a node that may not wait answers 503 with Retry-After
// and the loading progress, and its request wakes the deployment too.
func TestIdleDeploymentUnloadsAndWakes(t *testing.T) {
	const load = 400 * time.Millisecond
	simA := ollamasim.StartTest(t, ollamasim.Config{Name: "a", LoadDuration: load})
	simB := ollamasim.StartTest(t, ollamasim.Config{Name: "b", LoadDuration: load})
	wakeWait := func(d time.Duration) func(*node.Config) { return func(c *node.Config) { c.WakeWait = d } }
	a := testnode.Start(t, simA.URL(), placed("a", "1xA100:80GiB", "zone=a"), wakeWait(20*time.Second))
	b := testnode.Start(t, simB.URL(), placed("b", "1xA100:80GiB", "zone=b", a.Addr()), wakeWait(0))
	labelNodes(t, a.URL(), "a", "b")
	waitView(t, a.URL(), allReady(2))
	waitGPUs(t, a.URL(), 2)
	sims := map[string]*ollamasim.Server{"a": simA, "b": simB}

	create(t, a.URL(), `{"name":"sleepy","model":"llama3.2:1b","replicas":1,"idle_timeout":"1s"}`)
	d := waitDep(t, a.URL(), "sleepy", func(d depView) bool { return d.Settled && d.ReadyReplicas == 1 })
	if d.IdleTimeout != 1 || d.Idle || d.LastUsed == 0 {
		t.Fatalf("new deployment %+v, want idle timeout 1s, not idle, used at its creation", d)
	}
	holder := sims[d.Placements[0].Node]
	waitLoaded(t, holder, true)

	// No requests: idle, no replica, and the model unloaded.
	d = waitDep(t, a.URL(), "sleepy", func(d depView) bool { return d.Idle && d.Settled && len(d.Placements) == 0 })
	if d.Status != "idle" {
		t.Fatalf("idle deployment %+v, want status idle", d)
	}
	asleepSince := d.LastUsed
	waitLoaded(t, holder, false)

	// A request wakes it and waits for the load.
	start := time.Now()
	st, _, raw := chatTo(t, a.URL(), "sleepy")
	took := time.Since(start)
	if st != http.StatusOK {
		t.Fatalf("request to an idle deployment: %d %s", st, raw)
	}
	if took < load {
		t.Fatalf("served after %v, before the model could load (%v)", took, load)
	}
	if d := waitDep(t, a.URL(), "sleepy", func(depView) bool { return true }); d.LastUsed <= asleepSince {
		t.Fatalf("the request did not wake the deployment or record its use: %+v", d)
	}

	// Idle again, as node b's own state has it; node b does not wait.
	waitDep(t, b.URL(), "sleepy?stale=true", func(d depView) bool { return d.Idle && d.Settled && len(d.Placements) == 0 })
	st, hdr, raw := chatTo(t, b.URL(), "sleepy")
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	if st != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || e.Error.Code != "model_loading" ||
		!strings.Contains(e.Error.Message, "sleepy") || !strings.Contains(e.Error.Message, "waking") {
		t.Fatalf("request to node b that may not wait: %d Retry-After %q %s", st, hdr.Get("Retry-After"), raw)
	}
	// That request woke it: a replica becomes ready, and a retry is served.
	waitDep(t, b.URL(), "sleepy", func(d depView) bool { return d.ReadyReplicas == 1 })
	if st, _, raw := chatTo(t, b.URL(), "sleepy"); st != http.StatusOK {
		// The deployment may have gone idle again in between (1s):
		// then the answer must be the loading one.
		if st != http.StatusServiceUnavailable || !strings.Contains(string(raw), "model_loading") {
			t.Fatalf("retry on node b: %d %s", st, raw)
		}
	}
}

// TestSkewedClockKeepsBusyDeployment: a node whose clock is ten minutes
// slow records the uses of a deployment with times far in the past; the
// leader must still count them, and not unload a deployment that the
// node keeps busy. Once the requests stop it goes idle.
func TestSkewedClockKeepsBusyDeployment(t *testing.T) {
	simA := ollamasim.StartTest(t, ollamasim.Config{Name: "a"})
	simB := ollamasim.StartTest(t, ollamasim.Config{Name: "b"})
	slow := func(c *node.Config) { c.Clock = func() time.Time { return time.Now().Add(-10 * time.Minute) } }
	a := testnode.Start(t, simA.URL(), placed("a", "1xA100:80GiB", "zone=a"))
	b := testnode.Start(t, simB.URL(), placed("b", "1xA100:80GiB", "zone=b", a.Addr()), slow)
	labelNodes(t, a.URL(), "a", "b")
	waitView(t, a.URL(), allReady(2))
	waitGPUs(t, a.URL(), 2)

	create(t, a.URL(), `{"name":"busy","model":"llama3.2:1b","replicas":1,"idle_timeout":"2s"}`)
	waitDep(t, a.URL(), "busy", func(d depView) bool { return d.Settled && d.ReadyReplicas == 1 })
	// Requests through the slow node for three idle timeouts: every one
	// is served, and the deployment never goes idle.
	start := time.Now()
	for n := 0; time.Since(start) < 6*time.Second; n++ {
		if st, _, raw := chatTo(t, b.URL(), "busy"); st != http.StatusOK {
			t.Fatalf("request %d through the slow node: %d %s", n, st, raw)
		}
		if d := waitDep(t, a.URL(), "busy", func(depView) bool { return true }); d.Idle {
			t.Fatalf("deployment went idle while used through a node with a slow clock (request %d, %v in): %+v", n, time.Since(start), d)
		}
	}
	waitDep(t, a.URL(), "busy", func(d depView) bool { return d.Idle })
}

// chatTo sends one chat completion and returns the status, headers and
// body.
func chatTo(t *testing.T, url, model string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return send(t, req)
}

// waitLoaded waits until the simulated Ollama has llama3.2:1b loaded, or
// not.
func waitLoaded(t *testing.T, sim *ollamasim.Server, loaded bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sim.WaitFor(ctx, func(s ollamasim.Stats) bool { return s.Model("llama3.2:1b").Loaded == loaded }); err != nil {
		t.Fatalf("model loaded=%v never held: %+v", loaded, sim.Stats().Model("llama3.2:1b"))
	}
}
