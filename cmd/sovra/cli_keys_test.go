package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/testwait"
)

// TestCLIKeys drives `sovra key` against a real cluster: every command
// in table and JSON form, checked against what the cluster holds and
// against what the nodes let a key's secret do.
func TestCLIKeys(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "b")
	cl := c.Client("a")
	ctx := context.Background()

	var made client.Key
	t.Run("create json", func(t *testing.T) {
		sovra(t, env, "key", "create", "--name", "search-ci", "--models", "llama3.2:1b,qwen*", "--jurisdictions", "EU",
			"--expires-in", "30d", "--rpm", "600", "--tokens-per-day", "2000000", "--label", "team=search", "--label", "env=ci",
			"-o", "json").ok(t).decode(t, &made)
		if !strings.HasPrefix(made.Secret, "sk-sovra-") || !strings.HasPrefix(made.Secret, made.Prefix) {
			t.Fatalf("created key %+v", made)
		}
		held := clusterKey(t, cl, made.ID)
		want := client.Key{ID: made.ID, Name: "search-ci", Role: client.RoleInference, Prefix: made.Prefix,
			Models: []string{"llama3.2:1b", "qwen*"}, Jurisdictions: []string{"EU"},
			Limits: client.Limits{RequestsPerMinute: 600, TokensPerDay: 2000000}, Labels: map[string]string{"team": "search", "env": "ci"},
			Expires: held.Expires, Created: held.Created, Modified: held.Modified}
		if fmt.Sprint(held) != fmt.Sprint(want) {
			t.Fatalf("the cluster holds %+v, want %+v", held, want)
		}
		if d := time.Until(time.UnixMilli(held.Expires)); d < 29*24*time.Hour || d > 30*24*time.Hour {
			t.Fatalf("expires in %v, want 30 days", d)
		}
		made.Secret, made.LastUsed = held.Secret, held.LastUsed
		if fmt.Sprint(made) != fmt.Sprint(held) {
			t.Fatalf("printed %+v, the cluster holds %+v", made, held)
		}
	})

	var secret string
	var tbl client.Key
	t.Run("create table", func(t *testing.T) {
		r := sovra(t, env, "key", "create", "--name", "tbl", "--role", "admin").ok(t)
		secret = fieldOf(t, r.out, "secret")
		tbl = clusterKey(t, cl, fieldOf(t, r.out, "id"))
		if tbl.Name != "tbl" || tbl.Role != client.RoleAdmin || fieldOf(t, r.out, "prefix") != tbl.Prefix ||
			!strings.HasPrefix(secret, tbl.Prefix) || fieldOf(t, r.out, "models") != "all" {
			t.Fatalf("created %+v:\n%s", tbl, r.out)
		}
		if !strings.Contains(r.err, "store the secret now: it is never shown again") || strings.Contains(r.err, secret) {
			t.Fatalf("stderr:\n%s", r.err)
		}
		waitKeyAnswers(t, c, secret, http.StatusOK)
		// An admin key is an admin credential for the CLI too.
		sovra(t, env.with("SOVRA_TOKEN", secret), "key", "show", tbl.ID).ok(t)
	})

	t.Run("secret shown only once", func(t *testing.T) {
		for _, args := range [][]string{{"key", "list"}, {"key", "list", "-o", "wide"}, {"key", "list", "-o", "json"},
			{"key", "list", "-o", "yaml"}, {"key", "show", tbl.ID}, {"key", "show", tbl.ID, "-o", "json"}} {
			r := sovra(t, env, args...).ok(t)
			if strings.Contains(r.out+r.err, secret) || strings.Contains(r.out, `"secret"`) || strings.Contains(r.out, "secret:") {
				t.Fatalf("%v shows a secret:\n%s", args, r.out)
			}
		}
		r := sovra(t, env.with("SOVRA_TOKEN", secret+"x"), "key", "list")
		r.fails(t, cli.ExitError, "refused the credential")
		if strings.Contains(r.out+r.err, secret) {
			t.Fatalf("the error shows the secret:\n%s", r.err)
		}
	})

	t.Run("list", func(t *testing.T) {
		var got []client.Key
		sovra(t, env, "key", "list", "-o", "json").ok(t).decode(t, &got)
		held, err := cl.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || len(held) != 2 || ids(got) != ids(held) || ids(got) != ids([]client.Key{made, tbl}) {
			t.Fatalf("listed %+v, the cluster holds %+v", got, held)
		}
		r := sovra(t, env, "key", "list").ok(t)
		lines := r.lines()
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "LAST USED") || strings.Contains(lines[0], "LIMITS") {
			t.Fatalf("table:\n%s", r.out)
		}
		row := lineWith(t, r.out, made.ID)
		for _, want := range []string{"search-ci", "inference", made.Prefix, "llama3.2:1b,qwen*", "in 29d"} {
			if !strings.Contains(row, want) {
				t.Fatalf("row lacks %q: %s", want, row)
			}
		}
		row = lineWith(t, sovra(t, env, "key", "list", "-o", "wide").ok(t).out, made.ID)
		for _, want := range []string{"rpm=600,tokens/day=2000000", "EU", "env=ci,team=search"} {
			if !strings.Contains(row, want) {
				t.Fatalf("wide row lacks %q: %s", want, row)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		var got client.Key
		sovra(t, env, "key", "show", made.ID, "-o", "json").ok(t).decode(t, &got)
		held := clusterKey(t, cl, made.ID)
		got.LastUsed = held.LastUsed
		if fmt.Sprint(got) != fmt.Sprint(held) {
			t.Fatalf("shown %+v, the cluster holds %+v", got, held)
		}
		out := sovra(t, env, "key", "show", made.ID).ok(t).out
		for k, v := range map[string]string{"id": made.ID, "name": "search-ci", "role": "inference", "jurisdictions": "EU",
			"limits": "rpm=600,tokens/day=2000000", "labels": "env=ci,team=search", "last used": "never"} {
			if got := fieldOf(t, out, k); got != v {
				t.Fatalf("%s: %q, want %q\n%s", k, got, v, out)
			}
		}
	})

	t.Run("update changes only what is given", func(t *testing.T) {
		before := clusterKey(t, cl, made.ID)
		var got client.Key
		sovra(t, env, "key", "update", made.ID, "--rpm", "100", "-o", "json").ok(t).decode(t, &got)
		after := clusterKey(t, cl, made.ID)
		want := before
		want.Limits.RequestsPerMinute, want.Modified = 100, after.Modified
		if after.Modified == 0 || fmt.Sprint(after) != fmt.Sprint(want) || got.Limits != after.Limits {
			t.Fatalf("after --rpm 100: %+v, want %+v", after, want)
		}

		out := sovra(t, env, "key", "update", made.ID, "--models", "", "--name", "renamed").ok(t).out
		after2 := clusterKey(t, cl, made.ID)
		want = after
		want.Models, want.Name, want.Modified = []string{}, "renamed", after2.Modified
		if fmt.Sprint(after2) != fmt.Sprint(want) || fieldOf(t, out, "models") != "all" || fieldOf(t, out, "name") != "renamed" {
			t.Fatalf("after --models '' --name renamed: %+v, want %+v\n%s", after2, want, out)
		}
		sovra(t, env, "key", "update", made.ID).fails(t, cli.ExitUsage, "nothing to change")
		sovra(t, env, "key", "update", made.ID, "--role", "root").fails(t, cli.ExitUsage, "--role")
		sovra(t, env, "key", "update", made.ID, "--rpm", "-1").fails(t, cli.ExitUsage, "--rpm")
		if fmt.Sprint(clusterKey(t, cl, made.ID)) != fmt.Sprint(after2) {
			t.Fatal("a refused update changed the key")
		}
	})

	t.Run("rotate", func(t *testing.T) {
		r := sovra(t, env, "key", "rotate", tbl.ID).ok(t)
		second := fieldOf(t, r.out, "secret")
		if second == secret || !strings.HasPrefix(fieldOf(t, r.out, "previous secret"), tbl.Prefix) ||
			!strings.Contains(r.err, "never shown again") {
			t.Fatalf("rotate:\n%s\n%s", r.out, r.err)
		}
		waitKeyAnswers(t, c, second, http.StatusOK)
		waitKeyAnswers(t, c, secret, http.StatusOK) // in its grace hour

		var k client.Key
		sovra(t, env, "key", "rotate", tbl.ID, "--grace", "0", "-o", "json").ok(t).decode(t, &k)
		held := clusterKey(t, cl, tbl.ID)
		if k.Secret == "" || k.Secret == second || k.ID != tbl.ID || k.Prefix != held.Prefix || held.PrevPrefix != "" || held.Rotated == 0 {
			t.Fatalf("rotated %+v, the cluster holds %+v", k, held)
		}
		waitKeyAnswers(t, c, k.Secret, http.StatusOK)
		waitKeyAnswers(t, c, second, http.StatusUnauthorized)
		waitKeyAnswers(t, c, secret, http.StatusUnauthorized)
		sovra(t, env, "key", "rotate", tbl.ID, "--grace", "soon").fails(t, cli.ExitUsage, "--grace")
	})

	t.Run("revoke", func(t *testing.T) {
		var k client.Key
		sovra(t, env, "key", "create", "--name", "doomed", "-o", "json").ok(t).decode(t, &k)
		waitKeyAnswers(t, c, k.Secret, http.StatusOK)
		out := sovra(t, env, "key", "revoke", k.ID).ok(t).out
		if fieldOf(t, out, "revoked") != k.ID {
			t.Fatalf("revoke: %q", out)
		}
		waitKeyAnswers(t, c, k.Secret, http.StatusUnauthorized)
		if _, err := cl.Key(ctx, k.ID); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("revoked key still held: %v", err)
		}

		var rv cli.Revoked
		sovra(t, env, "key", "revoke", made.ID, "-o", "json").ok(t).decode(t, &rv)
		if rv.Revoked != made.ID {
			t.Fatalf("revoke json %+v", rv)
		}
		if _, err := cl.Key(ctx, made.ID); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("revoked key still held: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, args := range [][]string{{"show", "key-nope"}, {"revoke", "key-nope"}, {"rotate", "key-nope"},
			{"update", "key-nope", "--name", "x"}, {"update", "key-nope", "--tpm", "5"}} {
			sovra(t, env, append([]string{"key"}, args...)...).fails(t, cli.ExitError, `no key "key-nope"`, "sovra key list")
		}
		for _, args := range [][]string{{"create", "--bogus"}, {"create", "--rpm", "many"}, {"create", "--role", "root"},
			{"create", "--expires-in", "soon"}, {"create", "--label", "novalue"}, {"create", "extra"}} {
			sovra(t, env, append([]string{"key"}, args...)...).fails(t, cli.ExitUsage)
		}
		sovra(t, env, "key", "show").fails(t, cli.ExitUsage, "needs 1 argument")
		sovra(t, env, "key", "revoke").fails(t, cli.ExitUsage, "needs 1 argument")
		sovra(t, env, "key", "bogus").fails(t, cli.ExitUsage, "unknown command")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "key", "create").fails(t, cli.ExitError, "refused the credential")
		// The server's own refusal of a field: exit 1 with its message.
		sovra(t, env, "key", "create", "--expires-in", "99999d").fails(t, cli.ExitError, "expires_in")
	})
}

// clusterKey is the key as the cluster holds it.
func clusterKey(t *testing.T, cl *client.Client, id string) client.Key {
	t.Helper()
	k, err := cl.Key(context.Background(), id)
	if err != nil {
		t.Fatalf("key %s: %v", id, err)
	}
	return *k
}

func ids(keys []client.Key) string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// fieldOf is the value of a "name: value" line of a table answer.
func fieldOf(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", name, out)
	}
	return m[1]
}

// lineWith is the output's line holding s.
func lineWith(t *testing.T, out, s string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	t.Fatalf("no line holds %q:\n%s", s, out)
	return ""
}

// keyRequest does an inference request with secret and returns the
// answer's status and body.
func keyRequest(t *testing.T, method, url, secret, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// waitKeyAnswers waits until every node answers GET /v1/models with
// secret by want.
func waitKeyAnswers(t *testing.T, c *testcluster.Cluster, secret string, want int) {
	t.Helper()
	for _, id := range c.IDs {
		testwait.For(t, 10*time.Second, fmt.Sprintf("node %s answering the key %d", id, want), func() bool {
			code, _ := keyRequest(t, http.MethodGet, c.URL(id)+"/v1/models", secret, "")
			return code == want
		})
	}
}

// TestCLIKeyRetries checks that rerunning a key change with the same
// idempotency key applies it once: one key made, its secret shown only by
// the first run; one rotation.
func TestCLIKeyRetries(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "a")
	var first, again client.Key
	args := []string{"key", "create", "--name", "retried", "--idempotency-key", "create-retried-1", "-o", "json"}
	sovra(t, env, args...).ok(t).decode(t, &first)
	r := sovra(t, env, args...).ok(t)
	r.decode(t, &again)
	if first.Secret == "" || again.Secret != "" || again.ID != first.ID || !strings.Contains(r.err, "earlier run with the same idempotency key") {
		t.Fatalf("first %+v, rerun %+v (stderr %q)", first, again, r.err)
	}
	keys, err := c.Client("b").Keys(context.Background())
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys after a retried create: %+v %v", keys, err)
	}
	rot := []string{"key", "rotate", first.ID, "--idempotency-key", "rotate-retried-1", "-o", "json"}
	var r1, r2 client.Key
	sovra(t, env, rot...).ok(t).decode(t, &r1)
	sovra(t, env, rot...).ok(t).decode(t, &r2)
	if r1.Secret == "" || r2.Secret != "" || r2.Prefix != r1.Prefix {
		t.Fatalf("rotations %+v then %+v", r1, r2)
	}
}
