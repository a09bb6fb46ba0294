package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/testauth"
)

// TestPlacementOnRealOllama runs three nodes, each over its own real
// Ollama holding a tiny model no catalog knows, with fake GPU inventories:
//
//   - a deployment of the model waits for its figures, which a node reads
//     from its Ollama (/api/show) and registers;
//   - its two replicas become ready on two of the Ollamas (/api/ps);
//   - draining a node moves its replica to the third make-before-break,
//     while a client loop through every node sees no failed request;
//   - stopping a node (and its Ollama) moves its replica to the node that
//     has room once the down grace is over, and that Ollama runs it.
func TestPlacementOnRealOllama(t *testing.T) {
	ollamarig.Require(t)
	begin := time.Now()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ids := []string{"a", "b", "c"}
	rigs, nodes := startOllamaCluster(ctx, t, ids, nil)
	url := func(id string) string { return nodes[id].URL() }

	// The deployment is accepted although no catalog knows "tiny"; a node
	// reads its figures from Ollama and registers them.
	create(t, url("b"), `{"name":"tiny","model":"tiny","replicas":2}`)
	entry := waitCatalogEntry(t, url("c"), "tiny")
	if entry.Builtin || !strings.HasPrefix(entry.Source, "Ollama /api/show on node ") || entry.Layers <= 0 || entry.MemoryBytes == 0 {
		t.Fatalf("registered figures %+v", entry)
	}
	d := waitDep(t, url("a"), "tiny", readyOn(2))
	holders := nodesOf(d)
	spare := otherThan(ids, holders...)[0]
	for _, id := range holders {
		waitRunning(t, rigs[id], true)
	}
	if isRunning(t, rigs[spare]) {
		t.Fatalf("tiny runs on %s, which holds no replica", spare)
	}
	t.Logf("replicas ready on %v, %v after the start", holders, time.Since(begin).Round(time.Millisecond))

	drained, kept := holders[0], holders[1]
	t.Run("drain moves the replica make-before-break", func(t *testing.T) {
		load := startLoad(t, ids, url)
		load.waitServed(t, 3)
		if st, _, raw := adminWith(t, "POST", url(kept)+"/admin/v1/nodes/"+drained+"/drain", `{"reason":"e2e"}`, nil); st != http.StatusOK {
			t.Fatalf("drain: %d %s", st, raw)
		}
		after := sorted(kept, spare)
		waitDep(t, url(kept), "tiny", func(d depView) bool { return readyOn(2)(d) && slices.Equal(nodesOf(d), after) }, keepsReady(2))
		waitRunning(t, rigs[spare], true)
		waitRunning(t, rigs[drained], false)
		load.waitServed(t, load.served()+3)
		load.stop(t)
		if st, _, raw := adminWith(t, "POST", url(kept)+"/admin/v1/nodes/"+drained+"/uncordon", "", nil); st != http.StatusOK {
			t.Fatalf("uncordon: %d %s", st, raw)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("a lost node's replica moves after the grace", func(t *testing.T) {
		// The spare now holds a replica and the drained node none.
		victim, to := spare, drained
		if err := nodes[victim].Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		rigs[victim].Stop()
		waitDep(t, url(kept), "tiny", func(d depView) bool { return readyOn(2)(d) && slices.Equal(nodesOf(d), sorted(kept, to)) })
		waitRunning(t, rigs[to], true)
		var n state.Node
		if admin(t, "GET", url(kept)+"/admin/v1/nodes/"+victim, "", &n); n.Status != state.NodeDown {
			t.Fatalf("the stopped node is %s", n.Status)
		}
		if since := time.Since(time.UnixMilli(n.StatusSince)); since < fastScheduling.DownGrace {
			t.Fatalf("the replica moved %v after the node went down, within the grace of %v", since, fastScheduling.DownGrace)
		}
		if err := chat(context.Background(), url(to)); err != nil {
			t.Fatalf("chat through %s after the move: %v", to, err)
		}
	})
}

// readyOn holds when n replicas are ready and nothing is left to do.
func readyOn(n int) func(depView) bool {
	return func(d depView) bool { return d.Settled && d.ReadyReplicas == n && len(d.Placements) == n }
}

// keepsReady fails the test when fewer than n replicas are ready: a move
// must make the new replica before it breaks the old one.
func keepsReady(n int) func(*testing.T, depView) {
	return func(t *testing.T, d depView) {
		t.Helper()
		if d.Name != "" && d.ReadyReplicas < n {
			t.Fatalf("only %d replicas ready during a move: %+v", d.ReadyReplicas, d)
		}
	}
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func otherThan(ids []string, not ...string) []string {
	var out []string
	for _, id := range ids {
		if !slices.Contains(not, id) {
			out = append(out, id)
		}
	}
	return out
}

// waitCatalogEntry waits until the catalog answers for a model.
func waitCatalogEntry(t *testing.T, url, name string) catalogModel {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var m catalogModel
		if st := admin(t, "GET", url+"/admin/v1/catalog/"+name, "", &m); st == http.StatusOK {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never entered the catalog", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isRunning reports whether the real Ollama lists tiny in /api/ps.
func isRunning(t *testing.T, rig *ollamarig.Rig) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := rig.Client().ListRunning(ctx)
	if err != nil {
		t.Fatalf("ps on %s: %v", rig.URL, err)
	}
	return slices.ContainsFunc(ps.Models, func(m api.ProcessModelResponse) bool { return m.Model == "tiny:latest" || m.Name == "tiny:latest" })
}

// waitRunning waits until the real Ollama runs tiny (or no longer does).
func waitRunning(t *testing.T, rig *ollamarig.Rig, want bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for isRunning(t, rig) != want {
		if time.Now().After(deadline) {
			t.Fatalf("/api/ps of %s: tiny running is not %v", rig.URL, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chat asks for a short chat completion of tiny through a node.
func chat(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body := `{"model":"tiny","messages":[{"role":"user","content":"Say hi"}],"max_tokens":4}`
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testauth.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	var out struct {
		Choices []struct {
			Message struct{ Role string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Choices) != 1 || out.Choices[0].Message.Role != "assistant" {
		return fmt.Errorf("answer %s: %v", raw, err)
	}
	return nil
}

// loadWorkers is how many requests the client keeps in flight.
const loadWorkers = 2

// load is a client whose workers send chat requests one after another,
// round robin through the nodes, until stopped.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	done       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, ids []string, url func(string) string) *load {
	l := &load{done: make(chan struct{})}
	for w := range loadWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				id := ids[i%len(ids)]
				if err := chat(context.Background(), url(id)); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("through %s: %v", id, err))
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) served() int64 { return l.ok.Load() }

func (l *load) waitServed(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for l.served() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the client got %d answers, want %d; failures: %v", l.served(), n, l.failures())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *load) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func (l *load) halt() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// stop ends the loop and fails the test on any failed request.
func (l *load) stop(t *testing.T) {
	t.Helper()
	l.halt()
	t.Logf("client: %d requests answered, %d failed", l.ok.Load(), l.failed.Load())
	if errs := l.failures(); len(errs) > 0 {
		t.Fatalf("%d requests failed: %v", len(errs), errs)
	}
}
