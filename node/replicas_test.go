package node_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// longGrace keeps a down node's replicas where they are for the whole
// test, so that only their readiness can change.
func longGrace(c *node.Config) { c.Cluster.Scheduling.DownGrace = time.Hour }

// TestReplicaOfADeadNodeIsNotReady stops the node of a ready replica:
// every admin view (list, get, explain) stops calling it ready, and the
// deployment stops saying ok, within one down-after (plus a tick) of the
// node's death, long before the replica moves.
//
// Figures: go test -race -count=1 -run TestReplicaOfADeadNodeIsNotReady -v ./node/
func TestReplicaOfADeadNodeIsNotReady(t *testing.T) {
	nodes := threeRegions(t, longGrace)
	url := nodes["us"].URL()
	create(t, url, `{"name":"watched","model":"llama3.2:1b","constraints":["jurisdiction=EU"]}`)
	d := waitDep(t, url, "watched", func(d depView) bool { return d.Settled && d.ReadyReplicas == 1 && d.Status == "ok" })
	victim := d.Placements[0].Node
	if err := nodes[victim].Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testwait.Until(t, 20*time.Second, func() bool { return notReadyEverywhere(t, url, "watched") }, func() string {
		return "the dead node's replica is still shown ready somewhere"
	})
	took := time.Since(killed)
	t.Logf("FIGURE node kill to its replica shown not ready: %v (down-after 1.5s)", took.Round(time.Millisecond))
	if limit := 1500*time.Millisecond + time.Second; took > limit {
		t.Fatalf("not ready only after %v, want within %v", took, limit)
	}
	d = waitDep(t, url, "watched", func(depView) bool { return true })
	if d.Status != "unavailable" || !strings.Contains(d.Reason, "0 of 1 replicas ready") || !slices.Equal(nodesOf(d), []string{victim}) {
		t.Fatalf("after the kill: %+v", d)
	}
}

// notReadyEverywhere holds when the list, the deployment and its
// explanation all say its replicas are not ready.
func notReadyEverywhere(t *testing.T, url, name string) bool {
	var list struct{ Deployments []depView }
	admin(t, "GET", url+"/admin/v1/deployments", "", &list)
	for _, d := range list.Deployments {
		if d.Name == name && (d.ReadyReplicas != 0 || d.Status == "ok") {
			return false
		}
	}
	var d depView
	if admin(t, "GET", url+"/admin/v1/deployments/"+name, "", &d); d.ReadyReplicas != 0 || d.Status == "ok" {
		return false
	}
	for _, p := range d.Placements {
		if p.Ready || p.State == "ready" {
			return false
		}
	}
	var e struct{ Status, Text string }
	admin(t, "GET", url+"/admin/v1/deployments/"+name+"/explain", "", &e)
	return e.Status != "ok" && strings.Contains(e.Text, "not serving")
}

// nodeDrain is GET /admin/v1/nodes/{id} with its drain report.
type nodeDrain struct {
	Status string `json:"status"`
	Drain  *struct {
		Complete  bool `json:"complete"`
		Remaining []struct {
			Deployment string `json:"deployment"`
		} `json:"remaining"`
		Blocked []struct {
			Deployment string `json:"deployment"`
			Reason     string `json:"reason"`
		} `json:"blocked"`
	} `json:"drain"`
}

// TestCordonKeepsAndDrainMoves: a cordoned node keeps the replicas it
// runs and takes no new one; a drain moves them, and the node says when
// the drain is complete or which replicas cannot move and why.
func TestCordonKeepsAndDrainMoves(t *testing.T) {
	nodes := threeRegions(t)
	url := nodes["us"].URL()
	create(t, url, `{"name":"mover","model":"llama3.2:1b","constraints":["jurisdiction=EU"]}`)
	d := waitDep(t, url, "mover", func(d depView) bool { return d.Settled && d.ReadyReplicas == 1 })
	from := d.Placements[0].Node
	to := map[string]string{"fr": "de", "de": "fr"}[from]
	country := map[string]string{"fr": "FR", "de": "DE"}[from]
	create(t, url, `{"name":"pinned","model":"llama3.2:1b","constraints":["country=`+country+`"]}`)
	waitDep(t, url, "pinned", func(d depView) bool { return on(from)(d) && d.ReadyReplicas == 1 })

	post(t, url+"/admin/v1/nodes/"+from+"/cordon")
	// Settled: the state holds the plan, so nothing is to move.
	for _, name := range []string{"mover", "pinned"} {
		waitDep(t, url, name, func(d depView) bool { return on(from)(d) && d.ReadyReplicas == 1 && d.Status == "ok" })
	}
	create(t, url, `{"name":"fresh","model":"llama3.2:1b","constraints":["jurisdiction=EU"]}`)
	waitDep(t, url, "fresh", on(to), never(from))
	var n nodeDrain
	if admin(t, "GET", url+"/admin/v1/nodes/"+from, "", &n); n.Status != "cordoned" || n.Drain != nil {
		t.Fatalf("cordoned node %+v", n)
	}

	post(t, url+"/admin/v1/nodes/"+from+"/drain")
	waitDep(t, url, "mover", func(d depView) bool { return on(to)(d) && d.ReadyReplicas == 1 })
	testwait.Until(t, 20*time.Second, func() bool {
		admin(t, "GET", url+"/admin/v1/nodes/"+from, "", &n)
		return n.Drain != nil && !n.Drain.Complete && len(n.Drain.Remaining) == 1 && len(n.Drain.Blocked) == 1
	}, func() string { return "no drain report blocked on pinned" })
	if b := n.Drain.Blocked[0]; b.Deployment != "pinned" || !strings.Contains(b.Reason, "country="+country) {
		t.Fatalf("blocked %+v", b)
	}
	if st := admin(t, "DELETE", url+"/admin/v1/deployments/pinned", "", nil); st != http.StatusOK {
		t.Fatalf("delete pinned: %d", st)
	}
	testwait.For(t, 20*time.Second, "the drain complete", func() bool {
		admin(t, "GET", url+"/admin/v1/nodes/"+from, "", &n)
		return n.Drain != nil && n.Drain.Complete && len(n.Drain.Remaining) == 0
	})
}

func post(t *testing.T, url string) {
	t.Helper()
	if st, _, raw := adminWith(t, "POST", url, "", nil); st != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, st, raw)
	}
}
