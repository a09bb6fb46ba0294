package node_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
)

// These tests drive the Go client against a real cluster over simulated
// Ollamas. The client decodes strictly, so a field the server sends and
// the client's wire types lack fails the test.

// clientTestCluster starts three nodes and returns a client of the first.
func clientTestCluster(t *testing.T) (*simCluster, *client.Client) {
	t.Helper()
	c := startSimCluster(t, []simNode{{id: "a"}, {id: "b"}, {id: "c"}})
	return c, client.New(c.url("a"), client.WithToken(testnode.Token), client.WithStrictDecoding(), client.WithTimeout(10*time.Second))
}

// must returns v, or fails the test the result is called with on err.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// wantErr fails the test unless err is an *client.Error matching target
// with the given param.
func wantErr(t *testing.T, err, target error, param string) {
	t.Helper()
	var ce *client.Error
	if !errors.Is(err, target) || !errors.As(err, &ce) || ce.Param != param {
		t.Fatalf("error %v: want %v with param %q", err, target, param)
	}
}

func TestClientClusterAndNodes(t *testing.T) {
	c, cl := clientTestCluster(t)
	ctx := context.Background()
	st := must(cl.ClusterStatus(ctx))(t)
	if st.Self != "a" || st.Leader == "" || len(st.Members) != 3 {
		t.Fatalf("cluster status %+v", st)
	}
	if nodes := must(cl.Nodes(client.Stale(ctx)))(t); len(nodes) != 3 {
		t.Fatalf("nodes %+v", nodes)
	}
	if n := must(cl.SetNodeLabels(ctx, "b", map[string]string{"zone": "b", "tier": "gold"}))(t); n.Labels["tier"] != "gold" {
		t.Fatalf("labels %+v", n.Labels)
	}
	if n := must(cl.Node(ctx, "b"))(t); n.ID != "b" || n.Labels["tier"] != "gold" || len(n.GPUs) != 1 {
		t.Fatalf("node %+v", n)
	}
	_, err := cl.Node(ctx, "nope")
	wantErr(t, err, client.ErrNotFound, "id")
	wantErr(t, cl.Remove(ctx, "nope"), client.ErrNotFound, "id")
	if n := must(cl.Cordon(ctx, "c", "maintenance"))(t); n.Status != client.NodeCordoned || n.StatusReason != "maintenance" {
		t.Fatalf("cordon %+v", n)
	}
	if n := must(cl.Drain(ctx, "c", ""))(t); n.Status != client.NodeDraining {
		t.Fatalf("drain %+v", n)
	}
	if n := must(cl.Node(ctx, "c"))(t); n.Drain == nil || !n.Drain.Complete {
		t.Fatalf("drain report of an empty node %+v", n.Drain)
	}
	if n := must(cl.Uncordon(ctx, "c", ""))(t); n.Status != client.NodeReady {
		t.Fatalf("uncordon %+v", n)
	}
	if v := must(cl.Routing(ctx))(t); v.Policy == "" {
		t.Fatalf("routing %+v", v)
	}
	snap := must(cl.SaveSnapshot(ctx))(t)
	var ce *client.Error
	if err := cl.RestoreSnapshot(ctx, snap, false); !errors.Is(err, client.ErrConflict) || !errors.As(err, &ce) || ce.Code != "restore_not_forced" {
		t.Fatalf("unforced restore: %v", err)
	}
	wantErr(t, cl.Join(ctx, client.JoinRequest{}), client.ErrBadRequest, "")
	if err := cl.Remove(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "c to leave the raft configuration", func() bool {
		st, err := cl.ClusterStatus(ctx)
		return err == nil && len(st.Members) == 2
	})
	_ = c
}

func TestClientDeployments(t *testing.T) {
	_, cl := clientTestCluster(t)
	ctx := context.Background()
	two := 2
	req := client.DeploymentRequest{Name: "chat", Model: fastModel, Replicas: &two, IdleTimeout: "10m"}
	first := client.WithIdempotencyKey(ctx, "create-chat")
	d := must(cl.CreateDeployment(first, req))(t)
	if d.Name != "chat" || d.Replicas != 2 || d.IdleTimeout != 600 {
		t.Fatalf("created %+v", d)
	}
	if again := must(cl.CreateDeployment(first, req))(t); again.Version != d.Version {
		t.Fatalf("replayed create %+v, first %+v", again, d)
	}
	_, err := cl.CreateDeployment(ctx, req)
	wantErr(t, err, client.ErrConflict, "")
	_, err = cl.CreateDeployment(ctx, client.DeploymentRequest{Name: "Bad Name", Model: fastModel})
	wantErr(t, err, client.ErrBadRequest, "name")
	_, err = cl.Deployment(ctx, "nope")
	wantErr(t, err, client.ErrNotFound, "name")
	testwait.For(t, 30*time.Second, "chat to be ready twice", func() bool {
		d, err := cl.Deployment(ctx, "chat")
		return err == nil && d.Settled && d.ReadyReplicas == 2
	})
	list := must(cl.Deployments(ctx))(t)
	if len(list) != 1 || list[0].Name != "chat" || len(list[0].Placements) != 2 {
		t.Fatalf("list %+v", list)
	}
	if d := must(cl.ScaleDeployment(ctx, "chat", 3))(t); d.Replicas != 3 {
		t.Fatalf("scaled %+v", d)
	}
	if e := must(cl.Explain(ctx, "chat"))(t); e.Deployment != "chat" || len(e.Nodes) != 3 || e.Text == "" {
		t.Fatalf("explain %+v", e)
	}
	if s := must(cl.ExplainText(ctx, "chat"))(t); !strings.Contains(s, "chat") {
		t.Fatalf("explain text %q", s)
	}
	if err := cl.DeleteDeployment(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, cl.DeleteDeployment(ctx, "chat"), client.ErrNotFound, "name")
}

func TestClientCatalog(t *testing.T) {
	_, cl := clientTestCluster(t)
	ctx := context.Background()
	if e := must(cl.CatalogEntry(ctx, fastModel))(t); !e.Builtin || e.MemoryBytes == 0 {
		t.Fatalf("built-in entry %+v", e)
	}
	spec := client.ModelSpec{Name: "acme/plain", Architecture: "llama", Parameters: 1_000_000, FileSize: 4_000_000,
		Layers: 2, Embedding: 64, Heads: 4, ContextLength: 2048}
	if e := must(cl.RegisterModel(ctx, spec, false))(t); e.Name != "acme/plain:latest" || e.KVHeads != 4 || e.Builtin {
		t.Fatalf("registered %+v", e)
	}
	_, err := cl.RegisterModel(ctx, spec, false)
	wantErr(t, err, client.ErrConflict, "name")
	spec.Layers = 3
	if e := must(cl.RegisterModel(ctx, spec, true))(t); e.Layers != 3 {
		t.Fatalf("replaced %+v", e)
	}
	all := must(cl.Catalog(ctx))(t)
	if !slices.ContainsFunc(all, func(e client.CatalogEntry) bool { return e.Name == "acme/plain:latest" }) {
		t.Fatalf("catalog lacks the registration: %+v", all)
	}
	if err := cl.UnregisterModel(ctx, "acme/plain"); err != nil {
		t.Fatal(err)
	}
	_, err = cl.CatalogEntry(ctx, "acme/plain")
	wantErr(t, err, client.ErrNotFound, "name")
}

func TestClientKeysAuditUsage(t *testing.T) {
	c, cl := clientTestCluster(t)
	ctx := context.Background()
	name, models := "ci", []string{"chat"}
	k := must(cl.CreateKey(ctx, client.KeyRequest{Name: &name, Models: &models, Limits: &client.Limits{RequestsPerMinute: 60}}))(t)
	if k.Secret == "" || k.Role != client.RoleInference || k.Limits.RequestsPerMinute != 60 {
		t.Fatalf("created %+v", k)
	}
	if keys := must(cl.Keys(ctx))(t); !slices.ContainsFunc(keys, func(x client.Key) bool { return x.ID == k.ID && x.Secret == "" }) {
		t.Fatalf("keys %+v", keys)
	}
	renamed := "ci-2"
	if u := must(cl.UpdateKey(ctx, k.ID, client.KeyRequest{Name: &renamed}))(t); u.Name != renamed {
		t.Fatalf("updated %+v", u)
	}
	r := must(cl.RotateKey(ctx, k.ID, time.Minute))(t)
	if r.Secret == "" || r.Secret == k.Secret || r.PrevPrefix != k.Prefix {
		t.Fatalf("rotated %+v", r)
	}
	if g := must(cl.Key(ctx, k.ID))(t); g.Name != renamed || g.Secret != "" {
		t.Fatalf("got %+v", g)
	}
	var err error
	testwait.For(t, 10*time.Second, "b to know the key and refuse it the admin routes", func() bool {
		_, err = client.New(c.url("b"), client.WithToken(r.Secret)).ClusterStatus(ctx)
		return !errors.Is(err, client.ErrUnauthorized)
	})
	wantErr(t, err, client.ErrForbidden, "")
	_, err = client.New(c.url("b"), client.WithToken("wrong")).ClusterStatus(ctx)
	wantErr(t, err, client.ErrUnauthorized, "")
	_, err = cl.UpdateKey(ctx, k.ID, client.KeyRequest{ExpiresIn: "forever"})
	wantErr(t, err, client.ErrBadRequest, "expires_in")
	if err := cl.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	_, err = cl.Key(ctx, k.ID)
	wantErr(t, err, client.ErrNotFound, "id")
	checkAudit(t, cl)
	checkUsage(t, cl)
}

func checkAudit(t *testing.T, cl *client.Client) {
	ctx := context.Background()
	p := must(cl.Audit(ctx, client.AuditQuery{Limit: 1}))(t)
	if len(p.Entries) != 1 || p.NextAfter != p.Entries[0].Seq {
		t.Fatalf("audit page %+v", p)
	}
	next := must(cl.Audit(ctx, client.AuditQuery{After: p.NextAfter, Action: p.Entries[0].Action}))(t)
	for _, e := range next.Entries {
		if e.Seq <= p.NextAfter || e.Action != p.Entries[0].Action {
			t.Fatalf("entry %+v after %d", e, p.NextAfter)
		}
	}
	if v := must(cl.VerifyAudit(ctx))(t); !v.OK || v.Entries == 0 || v.Head == nil {
		t.Fatalf("verify %+v", v)
	}
}

func checkUsage(t *testing.T, cl *client.Client) {
	ctx := context.Background()
	since := time.Now().Add(-time.Hour)
	if r := must(cl.Usage(ctx, client.UsageQuery{Since: since, GroupBy: []string{"key"}}))(t); r.Since != since.Unix() || r.Rows == nil {
		t.Fatalf("usage %+v", r)
	}
	if b := must(cl.UsageCSV(ctx, client.UsageQuery{}))(t); !strings.HasPrefix(string(b), "key,model,node,") {
		t.Fatalf("usage csv %q", b)
	}
	_, err := cl.Usage(ctx, client.UsageQuery{GroupBy: []string{"colour"}})
	wantErr(t, err, client.ErrBadRequest, "group_by")
}
