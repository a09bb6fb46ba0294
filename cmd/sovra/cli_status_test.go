package main

import (
	"strings"
	"testing"

	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testcluster"
)

const threeNodesToken = testcluster.Token

func threeNodes(t *testing.T) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, []testcluster.Spec{{ID: "a"}, {ID: "b"}, {ID: "c"}})
}

func TestStatus(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "b")

	var v cli.StatusView
	sovra(t, env, "status", "-o", "json").ok(t).decode(t, &v)
	if v.Cluster.Self != "b" || v.Cluster.Leader == "" || len(v.Cluster.Members) != 3 || len(v.Nodes) != 3 || v.Stale {
		t.Fatalf("status %+v", v)
	}
	for _, n := range v.Nodes {
		if n.VRAMTotal != 80<<30 || n.VRAMFree != n.VRAMTotal || len(n.GPUs) != 1 {
			t.Fatalf("node memory %+v", n)
		}
	}
	if len(v.Problems) != 0 {
		t.Fatalf("problems in a healthy cluster: %q", v.Problems)
	}

	r := sovra(t, env, "status").ok(t)
	for _, want := range []string{"Leader " + v.Cluster.Leader, "(leader)", "NODE", "VRAM FREE", "1xA100:80.0 GiB", "(none)"} {
		if !strings.Contains(r.out, want) {
			t.Fatalf("status table lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out, "\x1b[") {
		t.Fatalf("colour on a non-terminal:\n%q", r.out)
	}

	var y map[string]any
	r = sovra(t, env, "status", "-o", "yaml").ok(t)
	if !strings.Contains(r.out, "cluster:\n  self: b\n") {
		t.Fatalf("yaml:\n%s", r.out)
	}
	_ = y

	sovra(t, env.with("SOVRA_TOKEN", "wrong"), "status").fails(t, cli.ExitError, "refused the credential", "--token-file")
	sovra(t, env, "status", "extra").fails(t, cli.ExitUsage, "takes no arguments")
	sovra(t, env, "status", "-o", "xml").fails(t, cli.ExitUsage, "--output")
	sovra(t, env, "status", "--bogus").fails(t, cli.ExitUsage, "unknown flag")
	sovra(t, env, "bogus").fails(t, cli.ExitUsage, "unknown command")
	sovra(t, env.with("SOVRA_ADDR", "127.0.0.1:1"), "status").fails(t, cli.ExitError, "cannot reach http://127.0.0.1:1")
}
