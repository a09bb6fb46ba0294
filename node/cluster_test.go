package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testcerts"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
	loadview "github.com/sovra/sovra/node/router/load"
)

// token is the test clusters' secret, for peers only; operators use
// testnode.Token.
const token = "s3cret-cluster-token"

var fastRaft = cluster.RaftTimings{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
	LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 20 * time.Millisecond}

func member(id string, join ...string) func(*node.Config) {
	return func(c *node.Config) {
		c.NodeID = id
		c.Cluster.RaftAddr = "127.0.0.1:0"
		c.Cluster.Bootstrap = len(join) == 0
		c.Cluster.Join = join
		c.Cluster.Token = token
		c.Cluster.Raft = fastRaft
		c.Cluster.HeartbeatInterval = 100 * time.Millisecond
		c.Cluster.Labels = map[string]string{"jurisdiction": "EU"}
	}
}

// clusterView is a node's view of the cluster, GET /admin/v1/cluster.
type clusterView = client.ClusterStatus

func admin(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testnode.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}

// labelNodes sets the labels each node declared as the labels it is
// placed by, as an operator would once satisfied that they are true.
func labelNodes(t *testing.T, url string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		var n struct {
			Declared map[string]string `json:"declared_labels"`
		}
		testwait.For(t, 20*time.Second, id+" registered", func() bool {
			return admin(t, "GET", url+"/admin/v1/nodes/"+id, "", &n) == http.StatusOK
		})
		body, _ := json.Marshal(map[string]any{"labels": n.Declared})
		// Setting labels is idempotent: an outcome left unknown by an
		// election right after the cluster formed (504) is retried.
		code := 0
		testwait.Until(t, 20*time.Second, func() bool {
			code = admin(t, "PUT", url+"/admin/v1/nodes/"+id+"/labels", string(body), nil)
			return code == http.StatusOK
		}, func() string { return fmt.Sprintf("labels of %s set; last answer %d", id, code) })
	}
}

func waitView(t *testing.T, url string, ok func(clusterView) bool) clusterView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var v clusterView
		admin(t, "GET", url+"/admin/v1/cluster", "", &v)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached the expected cluster view; last %+v", url, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allReady(n int) func(clusterView) bool {
	return func(v clusterView) bool {
		if v.Leader == "" || v.Term == 0 || len(v.Members) != n {
			return false
		}
		for _, m := range v.Members {
			if !m.Voter || m.Status != "ready" || m.HTTPAddr == "" || m.RaftAddr == "" {
				return false
			}
		}
		return true
	}
}

// TestNodesFormAClusterOverHTTP starts three real nodes on loopback, one
// bootstrapping and two joining through its HTTP address, and checks the
// admin routes every operator uses.
func TestNodesFormAClusterOverHTTP(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	n1 := testnode.Start(t, sim.URL(), member("n1"), func(c *node.Config) { c.Cluster.GPUs = "2xH100:80GiB" })
	n2 := testnode.Start(t, sim.URL(), member("n2", n1.Addr()))
	n3 := testnode.Start(t, sim.URL(), member("n3", n1.Addr()))
	var leader string
	for _, n := range []*node.Node{n1, n2, n3} {
		leader = waitView(t, n.URL(), allReady(3)).Leader
	}

	t.Run("nodes report labels and GPUs", func(t *testing.T) {
		for _, q := range []string{"", "?stale=true"} {
			deadline := time.Now().Add(20 * time.Second)
			for {
				var n state.Node
				if st := admin(t, "GET", n2.URL()+"/admin/v1/nodes/n1"+q, "", &n); st != 200 {
					t.Fatalf("GET node: %d", st)
				}
				if len(n.GPUs) == 2 && n.GPUs[1].MemoryBytes == 80<<30 && n.GPUs[0].Model == "H100" && n.DeclaredLabels["jurisdiction"] == "EU" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node n1 %+v", n)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		var list struct{ Nodes []state.Node }
		if st := admin(t, "GET", n3.URL()+"/admin/v1/nodes", "", &list); st != 200 || len(list.Nodes) != 3 {
			t.Fatalf("GET nodes: %d %+v", st, list)
		}
		if st := admin(t, "GET", n3.URL()+"/admin/v1/nodes/nope", "", nil); st != 404 {
			t.Fatalf("unknown node: %d", st)
		}
	})
	t.Run("admin calls need the token", func(t *testing.T) {
		resp, err := http.Get(n2.URL() + "/admin/v1/cluster")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d without a token", resp.StatusCode)
		}
	})
	t.Run("internal routes refuse a caller without a cluster certificate", func(t *testing.T) {
		body := `{"id":"x","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}`
		clients := peerClients(t, n1)
		for _, who := range []string{"plain", "none", "stranger"} {
			url := "https://" + n2.Addr() + "/internal/v1/cluster/join"
			if who == "plain" {
				url = n2.URL() + "/internal/v1/cluster/join"
			}
			resp, err := clients[who].Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(raw), "not_peer") {
				t.Fatalf("%s: status %d: %s", who, resp.StatusCode, raw)
			}
		}
	})
	t.Run("snapshot save and forced restore", func(t *testing.T) {
		req, _ := http.NewRequest("GET", n3.URL()+"/admin/v1/snapshot", nil)
		req.Header.Set("Authorization", "Bearer "+testnode.Token)
		st, _, snap := send(t, req)
		if st != 200 || !bytes.Contains(snap, []byte(`"n1"`)) {
			t.Fatalf("snapshot %d: %.200s", st, snap)
		}
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if st := admin(t, "POST", n2.URL()+"/admin/v1/snapshot", string(snap), &e); st != http.StatusConflict || e.Error.Code != "restore_not_forced" {
			t.Fatalf("unforced restore: %d %+v", st, e)
		}
		if st := admin(t, "POST", n2.URL()+"/admin/v1/snapshot?force=true", string(snap), nil); st != 200 {
			t.Fatalf("forced restore: %d", st)
		}
	})
	t.Run("an operator removes a dead node", func(t *testing.T) {
		victim := n3
		if leader == "n3" {
			victim = n2
		}
		id := victim.Cluster().NodeID()
		if err := victim.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := admin(t, "POST", n1.URL()+"/admin/v1/cluster/remove", `{"id":"`+id+`"}`, nil); st != 200 {
			t.Fatalf("remove: %d", st)
		}
		waitView(t, n1.URL(), func(v clusterView) bool { return len(v.Members) == 2 })
	})
}

// TestOperatorCertsAndPublicTLS runs two nodes whose raft and peer calls
// use certificates of the operator's own CA, while the API serves its
// clients a public certificate of another CA on the same port. Internal
// routes refuse callers without a cluster certificate.
func TestOperatorCertsAndPublicTLS(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	clusterCA, publicCA := testcerts.NewCA(t), testcerts.NewCA(t)
	cdir, pdir := t.TempDir(), t.TempDir()
	withTLS := func(id string, join ...string) func(*node.Config) {
		cert, key, caFile := clusterCA.Files(t, cdir, id)
		pcert, pkey, _ := publicCA.Files(t, pdir, "api-"+id)
		return func(c *node.Config) {
			member(id, join...)(c)
			c.Cluster.CertFile, c.Cluster.KeyFile, c.Cluster.CAFile = cert, key, caFile
			c.TLSCertFile, c.TLSKeyFile = pcert, pkey
		}
	}
	n1 := testnode.Start(t, sim.URL(), withTLS("n1"))
	n2 := testnode.Start(t, sim.URL(), withTLS("n2", n1.Addr()))
	if !strings.HasPrefix(n2.URL(), "https://") {
		t.Fatalf("URL %s", n2.URL())
	}
	// A client that trusts only the public CA reaches the API.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: publicCA.Pool}}}
	defer client.CloseIdleConnections()
	testwait.For(t, 20*time.Second, "a two-node cluster over TLS", func() bool {
		var v clusterView
		req, _ := http.NewRequest("GET", n2.URL()+"/admin/v1/cluster", nil)
		req.Header.Set("Authorization", "Bearer "+testnode.Token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return allReady(2)(v)
	})
	// Internal routes refuse it: it has no cluster certificate.
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/internal/v1/cluster/status", "{}"},
		{"GET", "/internal/v1/load", ""},
		{"POST", "/internal/v1/forward/api/chat", "{}"},
	} {
		req, _ := http.NewRequest(r.method, n1.URL()+r.path, strings.NewReader(r.body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s without a cluster certificate: %d", r.path, resp.StatusCode)
		}
	}
	// Plain HTTP is refused when the API serves TLS.
	if resp, err := http.Get("http://" + n1.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("plain HTTP answered %d", resp.StatusCode)
	}
	// The nodes, which have cluster certificates, exchange their load.
	testwait.Until(t, 10*time.Second, func() bool {
		return n1.Router().View().Health("n2") == loadview.Fresh && n2.Router().View().Health("n1") == loadview.Fresh
	}, func() string { return "the nodes do not exchange load over mutual TLS" })
}
