package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testwait"
)

func TestCLIModelsContextsAndNoLeader(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "c")

	t.Run("model list and show", func(t *testing.T) {
		var all []client.CatalogEntry
		sovra(t, env, "model", "list", "-o", "json").ok(t).decode(t, &all)
		want, err := c.Client("a").Catalog(context.Background())
		if err != nil || len(all) != len(want) || len(all) == 0 {
			t.Fatalf("catalog: %d entries, want %d (%v)", len(all), len(want), err)
		}
		r := sovra(t, env, "model", "list").ok(t)
		if !strings.Contains(r.out, "llama3.1:8b") || !strings.Contains(r.out, "MEMORY") {
			t.Fatalf("model list:\n%s", r.out)
		}
		var m client.CatalogEntry
		sovra(t, env, "model", "show", "llama3.1:8b", "-o", "json").ok(t).decode(t, &m)
		if m.Name != "llama3.1:8b" || !m.Builtin || m.Layers != 32 || m.MemoryBytes == 0 {
			t.Fatalf("model %+v", m)
		}
		sovra(t, env, "model", "show", "nope:1b").fails(t, cli.ExitError, "nope:1b", "sovra model list")
	})

	t.Run("register from the yaml show prints, then unregister", func(t *testing.T) {
		y := sovra(t, env, "model", "show", "llama3.1:8b", "-o", "yaml").ok(t).out
		y = strings.Replace(y, "name: llama3.1:8b", "name: acme/coder:8b", 1)
		y = strings.Replace(y, "aliases:\n  - llama3.1:8b-instruct-q4_K_M\n", "", 1)
		file := writeFile(t, "m.yaml", y)
		var reg client.CatalogEntry
		sovra(t, env, "model", "register", "-f", file, "-o", "json").ok(t).decode(t, &reg)
		if reg.Name != "acme/coder:8b" || reg.Builtin || reg.CreatedIndex == 0 {
			t.Fatalf("registered %+v", reg)
		}
		sovra(t, env, "model", "register", "-f", file).fails(t, cli.ExitError, "--replace")
		sovraIn(t, env, y, "model", "register", "-f", "-", "--replace").ok(t)
		var mine []client.CatalogEntry
		sovra(t, env, "model", "list", "--registered", "-o", "json").ok(t).decode(t, &mine)
		if len(mine) != 1 || mine[0].Name != "acme/coder:8b" {
			t.Fatalf("registered models %+v", mine)
		}
		sovra(t, env, "model", "unregister", "acme/coder:8b").ok(t)
		if _, err := c.Client("a").CatalogEntry(context.Background(), "acme/coder:8b"); !isNotFoundErr(err) {
			t.Fatalf("unregistered model still there: %v", err)
		}
		sovra(t, env, "model", "register", "-f", writeFile(t, "bad.yaml", "name: x\ncolour: blue\n")).fails(t, cli.ExitUsage, "colour")
		sovra(t, env, "model", "register").fails(t, cli.ExitUsage, "-f FILE")
	})

	t.Run("contexts", func(t *testing.T) {
		noAddr := env.with("SOVRA_ADDR", "", "SOVRA_TOKEN", "")
		sovra(t, noAddr, "status").fails(t, cli.ExitError, "cannot reach "+cli.DefaultAddr)
		tokenFile := writeFile(t, "token", "  "+"wrong-token"+"\n")
		sovra(t, noAddr, "context", "add", "prod", "--addr", c.URL("a"), "--token-file", tokenFile).ok(t)
		sovraIn(t, noAddr, testTokenLine(), "context", "add", "lab", "--addr", c.URL("b"), "--token-stdin").ok(t)
		path := noAddr["SOVRA_CONTEXT_FILE"]
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("context file mode: %v %v", st, err)
		}
		if b, _ := os.ReadFile(path); !strings.Contains(string(b), "current: prod") {
			t.Fatalf("the first context is not the current one:\n%s", b)
		}
		sovra(t, noAddr, "status").fails(t, cli.ExitError, "refused the credential")
		sovra(t, noAddr, "context", "use", "lab").ok(t)
		var st cli.StatusView
		sovra(t, noAddr, "status", "-o", "json").ok(t).decode(t, &st)
		if st.Cluster.Self != "b" {
			t.Fatalf("the current context calls %s, want b", st.Cluster.Self)
		}
		sovra(t, noAddr, "status", "-o", "json", "--context", "prod", "--token-file", writeFile(t, "t", testTokenLine())).ok(t).decode(t, &st)
		if st.Cluster.Self != "a" {
			t.Fatalf("--context prod calls %s, want a", st.Cluster.Self)
		}
		var views []cli.ContextView
		sovra(t, noAddr, "context", "list", "-o", "json").ok(t).decode(t, &views)
		if len(views) != 2 || views[0].Name != "lab" || !views[0].Current || !views[1].Token {
			t.Fatalf("contexts %+v", views)
		}
		if r := sovra(t, noAddr, "context", "list").ok(t); strings.Contains(r.out, "wrong-token") || !strings.Contains(r.out, "*") {
			t.Fatalf("context list shows a token or no current mark:\n%s", r.out)
		}
		sovra(t, noAddr, "context", "use", "nope").fails(t, cli.ExitUsage, "no context")
		sovra(t, noAddr, "status", "--context", "nope").fails(t, cli.ExitUsage, "no context")
		sovra(t, noAddr, "context", "add", "bad name", "--addr", "x:1").fails(t, cli.ExitUsage, "context name")
		sovra(t, noAddr, "context", "add", "x").fails(t, cli.ExitUsage, "--addr")
		sovra(t, noAddr, "context", "remove", "prod").ok(t)
		os.Chmod(path, 0o644)
		if r := sovra(t, noAddr, "context", "list"); !strings.Contains(r.err, "chmod 600") {
			t.Fatalf("no warning about a context file others can read: %q", r.err)
		}
	})

	t.Run("no leader", func(t *testing.T) {
		for _, id := range []string{"a", "b"} {
			if err := c.Nodes[id].Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		sovra(t, env, "deployment", "list", "--request-timeout", "3s").fails(t, cli.ExitError, "no leader", "sovra status` on each node")
		var st cli.StatusView
		testwait.For(t, 30*time.Second, "c to see no leader", func() bool {
			st = cli.StatusView{}
			sovra(t, env, "status", "-o", "json", "--request-timeout", "3s").ok(t).decode(t, &st)
			return st.Cluster.Leader == ""
		})
		if !st.Stale || len(st.Problems) == 0 || !strings.HasPrefix(st.Problems[0], "no leader") {
			t.Fatalf("status without a leader: stale %v, problems %q", st.Stale, st.Problems)
		}
		r := sovra(t, env, "status", "--request-timeout", "3s").ok(t)
		if !strings.HasPrefix(r.out, "! no leader") || !strings.Contains(r.out, "its own copy") {
			t.Fatalf("status table without a leader:\n%s", r.out)
		}
	})
}

// testTokenLine is the management token as typed on stdin.
func testTokenLine() string { return threeNodesToken + "\n" }
