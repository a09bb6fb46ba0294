package node_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// freeAddr is a loopback address with a port free a moment ago, for a
// node that must come back on the same addresses.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// restartable is a member with fixed addresses and data directory, so
// that it can be stopped and started again as the same node.
type restartable struct {
	id, http, raft, dir string
	join                []string
}

func newRestartable(t *testing.T, id string, join ...string) *restartable {
	return &restartable{id: id, http: freeAddr(t), raft: freeAddr(t), dir: filepath.Join(t.TempDir(), id), join: join}
}

func (r *restartable) start(t *testing.T, ollama string) *node.Node {
	t.Helper()
	return testnode.Start(t, ollama, member(r.id, r.join...), func(c *node.Config) {
		c.HTTPAddr, c.Cluster.RaftAddr, c.DataDir = r.http, r.raft, r.dir
	})
}

// timed is one admin call and how long it took; a client that gives up
// after giveUp fails the test instead of waiting for ever.
func timed(t *testing.T, method, url, body string, giveUp time.Duration) (int, http.Header, []byte, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	client := testauth.NewClient(nil, giveUp)
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s %s: no answer after %v: %v", method, url, time.Since(start), err)
		return 0, nil, nil, time.Since(start)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, time.Since(start)
}

// TestAdminCallsWithoutAMajority stops two of three nodes. On the one
// left, every admin call answers within its deadline: reads 503 no_leader
// with Retry-After, writes 503 (nothing reached raft) or 504
// indeterminate; the cluster view says there is no leader and does not
// call the lost members ready. A scale whose client gave up is not
// applied when the cluster heals.
//
// Figures: go test -race -count=1 -run TestAdminCallsWithoutAMajority -v ./node/
func TestAdminCallsWithoutAMajority(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	r1 := newRestartable(t, "n1")
	r2, r3 := newRestartable(t, "n2", r1.http), newRestartable(t, "n3", r1.http)
	rs := map[string]*restartable{"n1": r1, "n2": r2, "n3": r3}
	nodes := map[string]*node.Node{"n1": r1.start(t, sim.URL()), "n2": r2.start(t, sim.URL()), "n3": r3.start(t, sim.URL())}
	leader := waitView(t, nodes["n3"].URL(), allReady(3)).Leader
	create(t, nodes["n1"].URL(), `{"name":"keep","model":"llama3.2:1b","replicas":0}`)
	survivor := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[leader]
	url := nodes[survivor].URL()
	var lost []string
	for id, n := range nodes {
		if id != survivor {
			lost = append(lost, id)
			if err := n.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("every call answers within its deadline", func(t *testing.T) {
		worst := allCallsAnswer(t, url+"/admin/v1", "?timeout=1s", time.Second)
		t.Logf("FIGURE admin latency without a majority, timeout=1s: max %v", worst.Round(time.Millisecond))
		st, h, raw, took := timed(t, "GET", url+"/admin/v1/deployments/keep", "", 15*time.Second)
		t.Logf("FIGURE admin latency without a majority, default timeout: %v (%d)", took.Round(time.Millisecond), st)
		if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || took > 12*time.Second {
			t.Fatalf("default deadline: %d after %v: %s", st, took, raw)
		}
	})
	t.Run("the cluster view says there is no leader", func(t *testing.T) {
		v := waitView(t, url, func(v clusterView) bool { return v.Leader == "" })
		if v.LastLeader != leader || v.NoLeaderSince == nil || !strings.Contains(v.Warning, "no leader") {
			t.Fatalf("leaderless view %+v", v)
		}
		for _, m := range v.Members {
			if m.ID != survivor && m.Status == "ready" {
				t.Fatalf("lost member shown ready: %+v", m)
			}
		}
	})
	t.Run("an abandoned scale is not applied after healing", func(t *testing.T) {
		// Heal only once the survivor has noticed that the client gave up
		// (it looks every 100ms): until then the write is a live request,
		// which a cluster that heals first may rightly apply.
		inFlight := metric(t, url, "sovra_requests_in_flight") // this scrape itself
		abandonScale(t, url+"/admin/v1/deployments/keep/scale")
		testwait.For(t, 5*time.Second, "the survivor to end the abandoned scale", func() bool {
			return metric(t, url, "sovra_requests_in_flight") <= inFlight
		})
		for _, id := range lost {
			nodes[id] = rs[id].start(t, sim.URL())
		}
		waitView(t, url, allReady(3))
		// Nothing retries the scale any more, so it could only come
		// through from a log: raft commits in order, so once a later write
		// is committed, anything of the abandoned scale that survived in
		// the leader's log is applied too, and a linearizable read shows
		// it.
		create(t, url, `{"name":"after-healing","model":"llama3.2:1b","replicas":0}`)
		var d depView
		if st := admin(t, "GET", url+"/admin/v1/deployments/keep", "", &d); st != http.StatusOK || d.Replicas != 0 {
			t.Fatalf("after healing: %d %+v", st, d)
		}
	})
}

// allCallsAnswer makes admin reads and writes under a cluster without a
// leader and checks each answers in time with the documented error; it
// returns the slowest.
func allCallsAnswer(t *testing.T, base, q string, limit time.Duration) time.Duration {
	t.Helper()
	calls := []struct{ method, path, body string }{
		{"GET", "/nodes", ""},
		{"GET", "/nodes/n1", ""},
		{"GET", "/deployments", ""},
		{"GET", "/deployments/keep", ""},
		{"GET", "/deployments/keep/explain", ""},
		{"POST", "/deployments", `{"name":"new","model":"llama3.2:1b"}`},
		{"POST", "/deployments/keep/scale", `{"replicas":2}`},
		{"DELETE", "/deployments/keep", ""},
		{"POST", "/nodes/n1/cordon", ""},
		{"PUT", "/nodes/n1/labels", `{"labels":{"a":"b"}}`},
		{"POST", "/cluster/remove", `{"id":"n1"}`},
	}
	var worst time.Duration
	for _, c := range calls {
		st, h, raw, took := timed(t, c.method, base+c.path+q, c.body, limit+3*time.Second)
		worst = max(worst, took)
		var e apiError
		_ = json.Unmarshal(raw, &e)
		okWrite := c.method != "GET" && st == http.StatusGatewayTimeout && e.Error.Code == "indeterminate"
		ok503 := st == http.StatusServiceUnavailable && h.Get("Retry-After") != "" && (e.Error.Code == "no_leader" || e.Error.Code == "timeout")
		if took > limit+time.Second || !(ok503 || okWrite) {
			t.Errorf("%s %s: %d %s after %v", c.method, c.path, st, raw, took)
		}
	}
	return worst
}

// abandonScale sends a scale and gives up on it after 300ms, as a client
// with a short timeout would.
func abandonScale(t *testing.T, url string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"replicas":3}`))
	req.Header.Set("Authorization", "Bearer "+testnode.Token)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 300 * time.Millisecond}
	defer client.CloseIdleConnections()
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the scale answered %d without a majority", resp.StatusCode)
	}
}
