package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testcluster"
)

// These helpers run the admin CLI in the test's process, as the binary
// runs it: the same root command, flags, exit codes and streams.

// result is one run of the CLI.
type result struct {
	out, err string
	code     int
}

// cliEnv is the environment a run sees; nothing of the test process's
// own environment leaks in.
type cliEnv map[string]string

// sovra runs the CLI with args under env and returns what it printed and
// its exit code.
func sovra(t *testing.T, env cliEnv, args ...string) result {
	t.Helper()
	return sovraIn(t, env, "", args...)
}

// sovraIn is sovra with stdin.
func sovraIn(t *testing.T, env cliEnv, stdin string, args ...string) result {
	t.Helper()
	var out, errw bytes.Buffer
	sio := cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errw, Getenv: func(k string) string { return env[k] }}
	code := execute(context.Background(), sio, args)
	return result{out: out.String(), err: errw.String(), code: code}
}

// decode decodes the run's JSON output into v, failing the test if it
// is not JSON of v's shape (unknown fields included).
func (r result) decode(t *testing.T, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, r.out)
	}
}

// ok fails the test unless the run exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	return r
}

// fails fails the test unless the run exited with code and its error
// message holds every one of want.
func (r result) fails(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.out, r.err)
	}
	for _, w := range want {
		if !strings.Contains(r.err, w) {
			t.Fatalf("error message lacks %q:\n%s", w, r.err)
		}
	}
}

// lines are the output's lines, trimmed.
func (r result) lines() []string {
	return strings.Split(strings.TrimRight(r.out, "\n"), "\n")
}

// clusterEnv is the environment of a CLI run against node id of c: its
// address and the management token in SOVRA_TOKEN, and a context file of
// the test's own.
func clusterEnv(t *testing.T, c *testcluster.Cluster, id string) cliEnv {
	t.Helper()
	dir := t.TempDir()
	return cliEnv{
		"SOVRA_ADDR":         c.URL(id),
		"SOVRA_TOKEN":        testcluster.Token,
		"SOVRA_CONTEXT_FILE": filepath.Join(dir, "contexts.yaml"),
		"HOME":               dir,
	}
}

// with returns a copy of env with more variables set (or, for "", unset).
func (e cliEnv) with(kv ...string) cliEnv {
	out := cliEnv{}
	for k, v := range e {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

// writeFile writes a file of the test's and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func asClientError(err error, target **client.Error) bool { return errors.As(err, target) }
