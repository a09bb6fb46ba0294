package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
)

func TestCLISnapshot(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "b")
	cl := c.Client("a")
	ctx := context.Background()
	deployOne(t, cl, "llama")
	name := "ci"
	if _, err := cl.CreateKey(ctx, client.KeyRequest{Name: &name}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.json")
	// inspect needs no node: its environment names none that answers.
	offline := cliEnv{"SOVRA_ADDR": "127.0.0.1:1"}

	t.Run("save", func(t *testing.T) {
		r := sovra(t, env, "snapshot", "save", path).ok(t)
		outHas(t, r.out, "saved the cluster's state at index ", " to "+path+": keep it secret")
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot file: %v %v", st.Mode(), err)
		}
		sovra(t, env, "snapshot", "save", path).fails(t, cli.ExitError, path+" exists", "--force")
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		var sum cli.SnapshotSummary
		sovra(t, env, "snapshot", "save", path, "--force", "-o", "json").ok(t).decode(t, &sum)
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 || sum.File != path || sum.Bytes != int(st.Size()) {
			t.Fatalf("overwritten snapshot file: %v %v, summary %+v", st.Mode(), err, sum)
		}
		out := sovra(t, env, "snapshot", "save", "-").ok(t).out
		var fromStdin cli.SnapshotSummary
		sovraIn(t, offline, out, "snapshot", "inspect", "-", "-o", "json").ok(t).decode(t, &fromStdin)
		if fromStdin.Nodes != 3 || fromStdin.File != "-" {
			t.Fatalf("snapshot from stdout: %+v", fromStdin)
		}
	})

	t.Run("inspect", func(t *testing.T) {
		var sum cli.SnapshotSummary
		sovra(t, offline, "snapshot", "inspect", path, "-o", "json").ok(t).decode(t, &sum)
		deps, err := cl.Deployments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := cl.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cl.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Format != cli.SnapshotFormat || sum.Version != 1 || sum.Index == 0 || sum.Index > st.AppliedIndex ||
			sum.Nodes != 3 || !slices.Equal(sum.NodeIDs, []string{"a", "b", "c"}) ||
			sum.Deployments != len(deps) || !slices.Equal(sum.DeploymentNames, []string{"llama"}) ||
			sum.Placements != len(deps[0].Placements) || sum.APIKeys != len(keys) || sum.APIKeys != 1 || sum.AuditEntries == 0 {
			t.Fatalf("summary %+v\ndeployments %+v\nkeys %+v", sum, deps, keys)
		}
		r := sovra(t, offline, "snapshot", "inspect", path).ok(t)
		outHas(t, r.out, "format:             sovra-state version 1\n", "nodes:              3 (a, b, c)\n",
			"deployments:        1 (llama)\n", "placements:         1\n", "api keys:           1\n", "raft index:  ")

		sovra(t, offline, "snapshot", "inspect", writeFile(t, "junk.json", "not json")).fails(t, cli.ExitError, "is not a sovra snapshot")
		sovra(t, offline, "snapshot", "inspect", writeFile(t, "v9.json", `{"version":9,"state":{}}`)).fails(t, cli.ExitError,
			"not a snapshot this sovra can restore (format version 9)")
		sovra(t, offline, "snapshot", "inspect", filepath.Join(t.TempDir(), "missing")).fails(t, cli.ExitError, "no such file")
		sovra(t, offline, "snapshot", "inspect").fails(t, cli.ExitUsage, "needs 1 argument(s)")
		sovra(t, offline, "snapshot", "inspect", path, "-o", "xml").fails(t, cli.ExitUsage, "--output")
	})

	t.Run("restore", func(t *testing.T) {
		if err := cl.DeleteDeployment(ctx, "llama"); err != nil {
			t.Fatal(err)
		}
		sovra(t, env, "snapshot", "restore", path).fails(t, cli.ExitError, "refused the restore", "replaces the cluster's whole state",
			"1 deployments", "rerun with --force")
		if _, err := cl.Deployment(ctx, "llama"); err == nil {
			t.Fatal("an unforced restore brought llama back")
		}
		r := sovra(t, env, "snapshot", "restore", path, "--force").ok(t)
		outHas(t, r.out, "restored the cluster's state from "+path, "3 nodes, 1 deployments, 1 keys")
		d, err := cl.Deployment(ctx, "llama")
		if err != nil || d.Replicas != 1 {
			t.Fatalf("llama after the restore: %+v %v", d, err)
		}
		sovra(t, env, "snapshot", "restore", writeFile(t, "junk.json", "{}")).fails(t, cli.ExitError, "not a snapshot this sovra can restore")
	})

	t.Run("errors", func(t *testing.T) {
		bad := env.with("SOVRA_TOKEN", "wrong")
		other := filepath.Join(t.TempDir(), "other.json")
		sovra(t, bad, "snapshot", "save", other).fails(t, cli.ExitError, "refused the credential")
		if _, err := os.Stat(other); !os.IsNotExist(err) {
			t.Fatalf("a refused save left a file: %v", err)
		}
		sovra(t, bad, "snapshot", "restore", path, "--force").fails(t, cli.ExitError, "refused the credential")
		sovra(t, env, "snapshot", "save").fails(t, cli.ExitUsage, "needs 1 argument(s)")
		sovra(t, env, "snapshot", "restore", path, "--bogus").fails(t, cli.ExitUsage, "unknown flag")
		sovra(t, env, "snapshot", "bogus").fails(t, cli.ExitUsage, "unknown command")
		if r := sovra(t, env, "snapshot").ok(t); !strings.Contains(r.out, "inspect") {
			t.Fatalf("snapshot alone shows no help:\n%s", r.out)
		}
	})
}
