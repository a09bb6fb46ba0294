package cluster

import (
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/internal/faultnet"
	"github.com/sovra/sovra/internal/testwait"
)

// TestJoinByURL joins through a member's address given as a URL, as the
// other address flags take it.
func TestJoinByURL(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	n := tc.newNode("url", testOpts{})
	n.cfg.Join = []string{"http://" + tc.nodes[0].cfg.HTTPAddr + "/ignored/path"}
	tc.nodes = append(tc.nodes, n)
	tc.start(n)
	tc.waitRegistered(n)
	testwait.For(t, 10*time.Second, "the node to be ready", func() bool { return n.c.Ready() == nil })
}

// TestFailedJoinWarnsOnce checks that a node that cannot reach the
// address it joins says so at warn, with the reason, once; the attempts
// that follow within the rate limit's interval log at debug.
func TestFailedJoinWarnsOnce(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	tc := &tcluster{t: t, net: faultnet.New(), log: zap.New(core)}
	n := tc.newNode("lost", testOpts{})
	n.cfg.Join = []string{deadAddr(t)}
	tc.nodes = append(tc.nodes, n)
	t.Cleanup(tc.stopAll)
	tc.start(n)
	failures := func() *observer.ObservedLogs {
		return logs.FilterMessageSnippet("certificate request failed")
	}
	testwait.For(t, 10*time.Second, "three failed attempts", func() bool { return failures().Len() >= 3 })
	warns := failures().FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 {
		t.Fatalf("%d warnings of %d failed attempts, want 1", len(warns), failures().Len())
	}
	if warns[0].ContextMap()["error"] == nil || warns[0].ContextMap()["via"] != n.cfg.Join[0] {
		t.Fatalf("the warning does not say why or where: %v", warns[0].ContextMap())
	}
	if err := n.c.Ready(); !errors.Is(err, ErrNotMember) {
		t.Fatalf("a node that has not joined is ready: %v", err)
	}
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
