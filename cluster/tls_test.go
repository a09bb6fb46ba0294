package cluster

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/internal/testcerts"
)

func TestMutualTLS(t *testing.T) {
	ca := testcerts.NewCA(t)
	tc := newCluster(t, testOpts{n: 3, tls: func(id string) *tls.Config { return ca.Config(t, id) }})
	tc.put(tc.followers()[0], "over-tls", 3)
	for _, n := range tc.nodes {
		if got := tc.replicasOf(n, "over-tls"); got != 3 {
			t.Fatalf("%s: %d", n.id, got)
		}
	}
	// A node whose certificate another CA signed cannot reach raft.
	other := testcerts.NewCA(t).Config(t, "stranger")
	layer, err := listenStream("127.0.0.1:0", other)
	if err != nil {
		t.Fatal(err)
	}
	defer layer.closeAll()
	conn, err := layer.Dial(rafAddrOf(tc.leader()), time.Second)
	if err == nil {
		// TLS 1.3 reports a refused client certificate on first read.
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("raft accepted a certificate from another CA")
	}
}

func rafAddrOf(n *tnode) raft.ServerAddress { return raft.ServerAddress(n.cfg.RaftAddr) }
