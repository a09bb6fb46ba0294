package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/faultnet"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/testwait"
)

// TestRawRaftRefused speaks raft's own protocol to a leader, as an
// attacker who reaches the port would: the connection is refused before
// any RPC, the leader keeps its term and leadership, and nothing is
// appended.
func TestRawRaftRefused(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	l := tc.leader()
	term, last := l.c.raft.CurrentTerm(), l.c.raft.LastIndex()
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer trans.Close()
	entry, _ := state.Encode(state.Command{Type: state.TypeNoop})
	req := raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte(trans.LocalAddr())},
		Term:      term + 10, PrevLogEntry: last, PrevLogTerm: term, LeaderCommitIndex: last + 1,
		Entries: []*raft.Log{{Index: last + 1, Term: term + 10, Type: raft.LogCommand, Data: append([]byte{250, 0}, entry[2:]...)}},
	}
	var resp raft.AppendEntriesResponse
	err = trans.AppendEntries("n1", raft.ServerAddress(l.c.RaftAddr()), &req, &resp)
	if err == nil {
		t.Fatalf("plain raft was answered: %+v", resp)
	}
	if got := l.c.raft.CurrentTerm(); got != term {
		t.Fatalf("term moved from %d to %d", term, got)
	}
	if !l.c.IsLeader() {
		t.Fatal("the leader stepped down")
	}
	// The cluster appends entries of its own meanwhile; none is the
	// attacker's.
	for i := last + 1; i <= l.c.raft.LastIndex(); i++ {
		var e raft.Log
		if err := l.c.store.GetLog(i, &e); err == nil && (e.Term > term || len(e.Data) > 0 && e.Data[0] == 250) {
			t.Fatalf("entry %d came from the attacker (term %d)", i, e.Term)
		}
	}
	l.c.Machine().Read(func(s *state.State) {
		if s.RejectedTotal != 0 {
			t.Fatalf("%d entries rejected", s.RejectedTotal)
		}
	})
}

// TestStrangerCertificateRefused: a node of another CA, and a member of
// this CA that is not in the configuration, cannot reach raft.
func TestStrangerCertificateRefused(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	l := tc.leader()
	dial := func(creds *pki.Creds) error {
		keys := &pki.Keyring{}
		keys.Set(creds)
		layer, err := listenStream("127.0.0.1:0", keys, func(string) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		defer layer.closeAll()
		conn, err := layer.Dial(raft.ServerAddress(l.c.RaftAddr()), time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	foreign, err := pki.NewCluster("n9")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(foreign); err == nil {
		t.Fatal("raft accepted a certificate of another CA")
	}
	ca, err := l.c.issuer()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(issue(t, ca, "n9")); err == nil {
		t.Fatal("raft accepted a node that is not a member")
	}
}

// issue makes credentials for id signed by ca.
func issue(t *testing.T, ca *pki.CA, id string) *pki.Creds {
	t.Helper()
	key, _ := pki.NewKey()
	certPEM, err := ca.Issue(id, key.Public(), nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	creds, err := pki.FromPEM(id, ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

func TestBadTokenRefused(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	// A node with the wrong token gets no certificate, and says why.
	intruder := tc.newNode("bad", testOpts{token: func(string) string { return "wrong" }})
	intruder.cfg.Join = []string{tc.nodes[0].cfg.HTTPAddr}
	tc.nodes = append(tc.nodes, intruder)
	tc.start(intruder)
	testwait.For(t, 10*time.Second, "the intruder to give up", func() bool { return intruder.c.JoinError() != nil })
	if err := intruder.c.JoinError(); !errors.Is(err, ErrBadToken) {
		t.Fatalf("join with the wrong token: %v", err)
	}
	if intruder.c.Keyring().Get() != nil {
		t.Fatal("the intruder got a certificate")
	}
	// Internal routes refuse a caller without a cluster certificate.
	req := JoinRequest{ID: "bad", HTTPAddr: intruder.cfg.HTTPAddr, RaftAddr: intruder.c.RaftAddr()}
	err := intruder.c.post(ctxFor(t, 5*time.Second), tc.nodes[0].cfg.HTTPAddr, "join", false, req, nil)
	if err == nil {
		t.Fatal("join without a cluster certificate was accepted")
	}
	st, _ := tc.nodes[0].c.Status(ctxFor(t, time.Second))
	if len(st.Members) != 1 {
		t.Fatalf("intruder joined: %+v", st.Members)
	}
}

// TestNotPeerStatus checks the wire form of a refused internal call.
func TestNotPeerStatus(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	body, _ := json.Marshal(JoinRequest{ID: "x", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: (&pki.Keyring{}).ClientConfig(ServerName)}}
	client.Transport.(*http.Transport).TLSClientConfig.VerifyPeerCertificate = nil // no CA to check against
	resp, err := client.Post("https://"+tc.nodes[0].cfg.HTTPAddr+routePrefix+"join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb errorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	if resp.StatusCode != http.StatusForbidden || eb.Code != "not_peer" {
		t.Fatalf("status %d body %+v", resp.StatusCode, eb)
	}
	client.CloseIdleConnections()
}

// TestJoinCannotTakeMemberID: a node holding the right token cannot join
// under a member's id; the member stays.
func TestJoinCannotTakeMemberID(t *testing.T) {
	tc := newCluster(t, testOpts{n: 2})
	// The impostor lives on a network of its own: the test network routes
	// by node id, and this one takes n2's.
	other := &tcluster{t: t, net: faultnet.New(), log: tc.log}
	impostor := other.newNode("n2", testOpts{})
	impostor.cfg.Join = []string{tc.nodes[0].cfg.HTTPAddr}
	other.nodes = append(other.nodes, impostor)
	t.Cleanup(other.stopAll)
	other.start(impostor)
	testwait.For(t, 10*time.Second, "the impostor to give up", func() bool { return impostor.c.JoinError() != nil })
	if err := impostor.c.JoinError(); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("impostor: %v, want ErrMemberExists", err)
	}
	st, _ := tc.leader().c.Status(ctxFor(t, time.Second))
	for _, m := range st.Members {
		if m.ID == "n2" && m.HTTPAddr != tc.nodes[1].cfg.HTTPAddr {
			t.Fatalf("n2 was replaced: %+v", m)
		}
	}
	// A member cannot speak for another either: its certificate names it.
	err := tc.nodes[1].c.post(ctxFor(t, 5*time.Second), tc.leader().cfg.HTTPAddr, "heartbeat", false,
		heartbeatRequest{Node: state.Node{ID: "n1"}}, nil)
	if !errors.Is(err, ErrNotPeer) {
		t.Fatalf("n2 sending n1's heartbeat: %v, want ErrNotPeer", err)
	}
}

// TestLabelsAreTheOperators: a node's --label flags are declared only;
// set-node-labels sets the labels it is placed by, and a later
// registration keeps them.
func TestLabelsAreTheOperators(t *testing.T) {
	tc := newCluster(t, testOpts{n: 2})
	f := tc.nodes[1]
	read := func() (labels, declared map[string]string) {
		tc.leader().c.Machine().Read(func(s *state.State) { labels, declared = s.Nodes[f.id].Labels, s.Nodes[f.id].DeclaredLabels })
		return labels, declared
	}
	if labels, declared := read(); labels != nil || declared["zone"] != f.id {
		t.Fatalf("labels %v, declared %v", labels, declared)
	}
	if _, err := tc.leader().c.Apply(ctxFor(t, 5*time.Second), state.Command{Type: state.TypeSetNodeLabels,
		Body: state.SetNodeLabels{ID: f.id, Labels: map[string]string{"jurisdiction": "EU"}}}); err != nil {
		t.Fatal(err)
	}
	f.c.SetNode(state.Node{Labels: map[string]string{"jurisdiction": "US"}, Version: "v2"})
	testwait.For(t, 10*time.Second, "the new registration", func() bool {
		labels, declared := read()
		return declared["jurisdiction"] == "US" && labels["jurisdiction"] == "EU"
	})
}

// TestUnappliableEntryDoesNotStopTheCluster commits an entry that does not
// decode: every node skips it, records it, keeps applying, and restarts.
func TestUnappliableEntryDoesNotStopTheCluster(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	// A known type whose body does not decode: a bug, which every replica
	// rejects alike. (An unknown type stops a node instead: versions_test.go.)
	bad := append([]byte{byte(state.TypeRemoveNode), 0}, `{"b":"not an object"}`...)
	if err := tc.leader().c.raft.Apply(bad, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	tc.put(tc.leader(), "after", 1)
	for _, n := range tc.nodes {
		tc.restart(n)
	}
	tc.put(tc.leader(), "after-restart", 1)
	for _, n := range tc.nodes {
		testwait.For(t, 10*time.Second, n.id+" to apply the write after restart", func() bool { return tc.replicasOf(n, "after-restart") == 1 })
		n.c.Machine().Read(func(s *state.State) {
			if s.RejectedTotal != 1 || len(s.Rejected) != 1 {
				t.Errorf("%s: rejected %d %+v", n.id, s.RejectedTotal, s.Rejected)
			}
		})
	}
}

// TestOperatorPKI: nodes given certificates of the operator's own CA form
// a cluster with them; no cluster CA is made.
func TestOperatorPKI(t *testing.T) {
	ca, err := pki.NewCA("operator CA")
	if err != nil {
		t.Fatal(err)
	}
	tc := newCluster(t, testOpts{n: 3, creds: func(id string) *pki.Creds { return issue(t, ca, id) }})
	tc.put(tc.followers()[0], "over-operator-tls", 3)
	for _, n := range tc.nodes {
		if got := tc.replicasOf(n, "over-operator-tls"); got != 3 {
			t.Fatalf("%s: %d", n.id, got)
		}
		if !n.c.Keyring().Get().CACert.Equal(ca.Cert) {
			t.Fatalf("%s trusts another CA", n.id)
		}
	}
}

// TestLabelsSetDuringARegistrationStay: an operator's label change that
// arrives while the leader registers the node (between reading its labels
// and committing them back) is not overwritten by the registration.
func TestLabelsSetDuringARegistrationStay(t *testing.T) {
	tc := newCluster(t, testOpts{n: 2})
	f := tc.nodes[1]
	var once sync.Once
	var early atomic.Bool
	hook := func(id string) {
		if id != f.id {
			return
		}
		once.Do(func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = tc.leader().c.Apply(context.Background(), state.Command{Type: state.TypeSetNodeLabels,
					Body: state.SetNodeLabels{ID: f.id, Labels: map[string]string{"jurisdiction": "EU"}}})
			}()
			// The change must wait for the registration; one that
			// commits within this window went in between.
			select {
			case <-done:
				early.Store(true)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
	registerRead.Store(&hook)
	t.Cleanup(func() { registerRead.Store(nil) })
	f.c.SetNode(state.Node{Labels: map[string]string{"zone": f.id, "rack": "r2"}, Version: "v2"})
	testwait.Until(t, 10*time.Second, func() bool {
		var labels, declared map[string]string
		tc.leader().c.Machine().Read(func(s *state.State) { labels, declared = s.Nodes[f.id].Labels, s.Nodes[f.id].DeclaredLabels })
		return declared["rack"] == "r2" && labels["jurisdiction"] == "EU"
	}, func() string {
		return fmt.Sprintf("the registration and the label change both applied (the change committed in between: %v)", early.Load())
	})
	if early.Load() {
		t.Fatal("a label change committed between a registration's read and its commit")
	}
}
