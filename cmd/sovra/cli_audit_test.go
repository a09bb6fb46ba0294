package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testwait"
)

// TestCLIAudit drives `sovra audit` against a real cluster: the entries
// of a key's creation and of a refused credential, the filters, --follow
// and verify, checked against the log the cluster holds.
func TestCLIAudit(t *testing.T) {
	c := threeNodes(t)
	env := clusterEnv(t, c, "b")
	cl := c.Client("a")
	ctx := context.Background()

	var k client.Key
	sovra(t, env, "key", "create", "--name", "audited", "-o", "json").ok(t).decode(t, &k)
	sovra(t, env.with("SOVRA_TOKEN", "wrong"), "audit").fails(t, cli.ExitError, "refused the credential")
	testwait.For(t, 10*time.Second, "the refused credential in the audit log", func() bool {
		p, err := cl.Audit(ctx, client.AuditQuery{Action: "auth-failed"})
		return err == nil && len(p.Entries) > 0
	})
	held := heldAudit(t, cl, client.AuditQuery{})

	t.Run("json", func(t *testing.T) {
		var got client.AuditPage
		sovra(t, env, "audit", "-o", "json").ok(t).decode(t, &got)
		if !reflect.DeepEqual(got.Entries, held) || got.NextAfter != 0 {
			t.Fatalf("listed %+v\nthe cluster holds %+v", got, held)
		}
		e := auditEntryOf(t, got.Entries, "put-api-key")
		if e.Actor != "admin" || e.Target != k.ID || e.Outcome != "ok" || e.Detail != "POST /admin/v1/keys" || e.Hash == "" {
			t.Fatalf("the key's creation: %+v", e)
		}
	})

	t.Run("table", func(t *testing.T) {
		r := sovra(t, env, "audit").ok(t)
		if len(r.lines()) != len(held)+1 || strings.Join(strings.Fields(r.lines()[0]), " ") != "SEQ TIME ACTOR ACTION TARGET OUTCOME" {
			t.Fatalf("table:\n%s", r.out)
		}
		e := auditEntryOf(t, held, "put-api-key")
		want := []string{strconv.FormatUint(e.Seq, 10), time.UnixMilli(e.Time).UTC().Format(time.RFC3339), "admin", "put-api-key", k.ID, "ok"}
		if got := strings.Fields(lineWith(t, r.out, k.ID)); !reflect.DeepEqual(got, want) {
			t.Fatalf("row %q, want %q", got, want)
		}
		row := lineWith(t, sovra(t, env, "audit", "-o", "wide").ok(t).out, k.ID)
		for _, want := range []string{"127.0.0.1", "POST /admin/v1/keys", e.Hash} {
			if !strings.Contains(row, want) {
				t.Fatalf("wide row lacks %q: %s", want, row)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		for _, f := range []struct {
			args []string
			q    client.AuditQuery
		}{
			{[]string{"--action", "put-api-key"}, client.AuditQuery{Action: "put-api-key"}},
			{[]string{"--actor", "anonymous"}, client.AuditQuery{Actor: "anonymous"}},
			{[]string{"--actor", "admin", "--action", "set-node-labels"}, client.AuditQuery{Actor: "admin", Action: "set-node-labels"}},
			{[]string{"--since", "1h"}, client.AuditQuery{}},
		} {
			var got client.AuditPage
			sovra(t, env, append([]string{"audit", "-o", "json"}, f.args...)...).ok(t).decode(t, &got)
			want := heldAudit(t, cl, f.q)
			if len(want) == 0 || !reflect.DeepEqual(got.Entries, want) {
				t.Fatalf("%v: %+v, want %+v", f.args, got.Entries, want)
			}
		}
		anon := heldAudit(t, cl, client.AuditQuery{Actor: "anonymous"})
		if anon[0].Action != "auth-failed" || anon[0].Outcome != "unauthenticated" || anon[0].Target != "GET /admin/v1/audit" {
			t.Fatalf("the refused credential: %+v", anon[0])
		}

		var got client.AuditPage
		sovra(t, env, "audit", "--limit", "2", "-o", "json").ok(t).decode(t, &got)
		if !reflect.DeepEqual(got.Entries, held[:2]) || got.NextAfter != held[1].Seq {
			t.Fatalf("--limit 2: %+v", got)
		}
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		if out := sovra(t, env, "audit", "--since", future).ok(t).out; !strings.Contains(out, "(none)") {
			t.Fatalf("entries from the future:\n%s", out)
		}
	})

	t.Run("verify", func(t *testing.T) {
		v, err := cl.VerifyAudit(ctx)
		if err != nil || !v.OK || v.Head == nil {
			t.Fatalf("verify %+v %v", v, err)
		}
		r := sovra(t, env, "audit", "verify").ok(t)
		if want := fmt.Sprintf("audit chain whole: %d entries from seq 1 to %d\n", v.Entries, v.Head.Seq); !strings.HasPrefix(r.out, want) ||
			!strings.Contains(r.out, v.Head.Hash) {
			t.Fatalf("verify:\n%s\nwant %s", r.out, want)
		}
		var got client.AuditVerification
		sovra(t, env, "audit", "verify", "-o", "json").ok(t).decode(t, &got)
		if !reflect.DeepEqual(&got, v) {
			t.Fatalf("verify json %+v, the cluster says %+v", got, v)
		}
	})

	t.Run("follow json", func(t *testing.T) {
		f := followCLI(env, "audit", "--follow", "--action", "put-api-key", "-o", "json")
		f.waitFor(t, k.ID)
		nk, err := cl.CreateKey(ctx, client.KeyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		f.waitFor(t, nk.ID)
		f.stop(t)
		lines := strings.Split(strings.TrimSpace(f.out.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("followed:\n%s", f.out.String())
		}
		for i, id := range []string{k.ID, nk.ID} {
			var e client.AuditEntry
			dec := json.NewDecoder(strings.NewReader(lines[i]))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil || e.Target != id || e.Action != "put-api-key" {
				t.Fatalf("line %q: %+v %v", lines[i], e, err)
			}
		}
	})

	t.Run("follow table", func(t *testing.T) {
		f := followCLI(env, "audit", "-f", "--action", "delete-api-key")
		f.waitFor(t, "SEQ")
		sovra(t, env, "key", "revoke", k.ID).ok(t)
		f.waitFor(t, k.ID)
		f.stop(t)
		lines := strings.Split(strings.TrimSpace(f.out.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[1], "admin") || !strings.Contains(lines[1], "delete-api-key") {
			t.Fatalf("followed:\n%s", f.out.String())
		}
	})

	t.Run("errors", func(t *testing.T) {
		sovra(t, env, "audit", "--since", "yesterday").fails(t, cli.ExitUsage, "--since")
		sovra(t, env, "audit", "--limit", "-1").fails(t, cli.ExitUsage, "--limit")
		sovra(t, env, "audit", "--limit", "x").fails(t, cli.ExitUsage)
		sovra(t, env, "audit", "extra").fails(t, cli.ExitUsage, "takes no arguments")
		sovra(t, env, "audit", "verify", "extra").fails(t, cli.ExitUsage, "takes no arguments")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "audit", "--follow").fails(t, cli.ExitError, "refused the credential")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "audit", "verify").fails(t, cli.ExitError, "refused the credential")
	})
}

// TestCLIAuditPages runs `sovra audit` against a node that answers two
// entries a page: the CLI follows next_after to the end, or to --limit.
func TestCLIAuditPages(t *testing.T) {
	var mu sync.Mutex
	var afters []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		afters = append(afters, r.URL.Query().Get("after"))
		mu.Unlock()
		after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
		limit, _ := strconv.ParseUint(r.URL.Query().Get("limit"), 10, 64)
		p := client.AuditPage{Entries: []client.AuditEntry{}}
		for seq := after + 1; seq <= 5; seq++ {
			if uint64(len(p.Entries)) == min(limit, 2) {
				p.NextAfter = seq - 1
				break
			}
			p.Entries = append(p.Entries, client.AuditEntry{Seq: seq, Time: 1, Actor: "admin", Action: "noop", Prev: "p"})
		}
		_ = json.NewEncoder(w).Encode(p)
	}))
	defer srv.Close()
	env := cliEnv{"SOVRA_ADDR": srv.URL, "SOVRA_TOKEN": "t", "SOVRA_CONTEXT_FILE": t.TempDir() + "/contexts.yaml"}

	// calls are the "after" of each page asked for since the last look.
	calls := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(afters, ",")
		afters = nil
		return s
	}

	var got client.AuditPage
	sovra(t, env, "audit", "-o", "json").ok(t).decode(t, &got)
	if a := calls(); len(got.Entries) != 5 || got.Entries[4].Seq != 5 || got.NextAfter != 0 || a != ",2,4" {
		t.Fatalf("listed %+v after %q", got, a)
	}
	var limited client.AuditPage
	sovra(t, env, "audit", "--limit", "3", "-o", "json").ok(t).decode(t, &limited)
	if a := calls(); len(limited.Entries) != 3 || limited.NextAfter != 3 || a != ",2" {
		t.Fatalf("--limit 3: %+v after %q", limited, a)
	}
}

// TestCLIAuditVerifyBroken: a broken chain exits 1 with the link and the
// reason, in table and JSON form.
func TestCLIAuditVerifyBroken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":false,"entries":5,"anchor":{},"head":{"seq":5,"hash":"h5"},
			"broken":{"seq":3,"reason":"the entry does not match its hash: it was changed"}}`))
	}))
	defer srv.Close()
	env := cliEnv{"SOVRA_ADDR": srv.URL, "SOVRA_TOKEN": "t", "SOVRA_CONTEXT_FILE": t.TempDir() + "/contexts.yaml"}

	r := sovra(t, env, "audit", "verify")
	r.fails(t, cli.ExitError, "broken at seq 3", "it was changed")
	if r.out != "" {
		t.Fatalf("stdout of a broken chain: %q", r.out)
	}
	r = sovra(t, env, "audit", "verify", "-o", "json")
	r.fails(t, cli.ExitError, "broken at seq 3")
	var v client.AuditVerification
	r.decode(t, &v)
	if v.OK || v.Broken == nil || v.Broken.Seq != 3 {
		t.Fatalf("verify json %+v", v)
	}
}

// heldAudit is every entry of the cluster's audit log q matches.
func heldAudit(t *testing.T, cl *client.Client, q client.AuditQuery) []client.AuditEntry {
	t.Helper()
	q.Limit = 1000
	p, err := cl.Audit(context.Background(), q)
	if err != nil || p.NextAfter != 0 {
		t.Fatalf("audit: %+v %v", p, err)
	}
	return p.Entries
}

func auditEntryOf(t *testing.T, entries []client.AuditEntry, action string) client.AuditEntry {
	t.Helper()
	for _, e := range entries {
		if e.Action == action {
			return e
		}
	}
	t.Fatalf("no %s entry in %+v", action, entries)
	return client.AuditEntry{}
}

// followed is a CLI run that goes on until the test cancels it (its
// output in main_test.go's syncBuffer).
type followed struct {
	out, err syncBuffer
	cancel   context.CancelFunc
	code     chan int
}

// followCLI starts the CLI with args in the background.
func followCLI(env cliEnv, args ...string) *followed {
	ctx, cancel := context.WithCancel(context.Background())
	f := &followed{cancel: cancel, code: make(chan int, 1)}
	sio := cli.IO{In: strings.NewReader(""), Out: &f.out, Err: &f.err, Getenv: func(k string) string { return env[k] }}
	go func() { f.code <- execute(ctx, sio, args) }()
	return f
}

// waitFor waits until the run has printed s.
func (f *followed) waitFor(t *testing.T, s string) {
	t.Helper()
	testwait.Until(t, 10*time.Second, func() bool { return strings.Contains(f.out.String(), s) }, func() string {
		return fmt.Sprintf("%q in the output:\n%s\nstderr:\n%s", s, f.out.String(), f.err.String())
	})
}

// stop cancels the run and checks that it ended with exit code 0.
func (f *followed) stop(t *testing.T) {
	t.Helper()
	f.cancel()
	select {
	case code := <-f.code:
		if code != 0 {
			t.Fatalf("exit %d after cancel\n%s", code, f.err.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after cancel")
	}
}
