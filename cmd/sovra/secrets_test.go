package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestSecretSettings: the two secrets come from a flag, the environment
// or a file (newline trimmed); only the flag warns about ps, only a file
// readable by others warns about its mode, and a secret never shows in
// an error.
func TestSecretSettings(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	admin, cluster := file("admin", "adm-s3cret\n", 0o600), file("cluster", "clu-s3cret\n", 0o600)
	loose := file("loose", "adm-s3cret\n", 0o644)
	cases := []struct {
		name          string
		args          []string
		env           map[string]string
		admin, peers  string
		warn, failure string
	}{
		{name: "flags", args: []string{"--admin-token", "adm-s3cret", "--cluster-token", "clu-s3cret"},
			admin: "adm-s3cret", peers: "clu-s3cret", warn: "--admin-token on the command line"},
		{name: "environment", env: map[string]string{"SOVRA_ADMIN_TOKEN": "adm-s3cret", "SOVRA_CLUSTER_TOKEN": "clu-s3cret"},
			admin: "adm-s3cret", peers: "clu-s3cret"},
		{name: "files", args: []string{"--admin-token-file", admin, "--cluster-token-file", cluster},
			admin: "adm-s3cret", peers: "clu-s3cret"},
		{name: "files from the environment", env: map[string]string{"SOVRA_ADMIN_TOKEN_FILE": admin, "SOVRA_CLUSTER_TOKEN_FILE": cluster},
			admin: "adm-s3cret", peers: "clu-s3cret"},
		{name: "cluster token flag warns", args: []string{"--cluster-token", "clu-s3cret"}, peers: "clu-s3cret", warn: "--cluster-token on the command line"},
		{name: "loose file", args: []string{"--admin-token-file", loose}, admin: "adm-s3cret", warn: "readable by other users"},
		{name: "flag and file", args: []string{"--admin-token", "adm-s3cret", "--admin-token-file", admin}, failure: "exclude each other"},
		{name: "env and file", env: map[string]string{"SOVRA_CLUSTER_TOKEN": "clu-s3cret"}, args: []string{"--cluster-token-file", cluster}, failure: "exclude each other"},
		{name: "missing file", args: []string{"--admin-token-file", filepath.Join(dir, "none")}, failure: "--admin-token-file"},
		{name: "empty file", args: []string{"--admin-token-file", file("empty", "\n", 0o600)}, failure: "no usable token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			s, err := parseServe(t, append(tc.args, "--node-id", "n")...)
			if tc.failure != "" {
				if err == nil || !strings.Contains(err.Error(), tc.failure) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %v, want one about %q without the secret", err, tc.failure)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.node.AdminToken != tc.admin || s.node.Cluster.Token != tc.peers {
				t.Fatalf("admin %q cluster %q", s.node.AdminToken, s.node.Cluster.Token)
			}
			warned := strings.Join(s.warnings, "\n")
			if (tc.warn == "") != (warned == "") || !strings.Contains(warned, tc.warn) || strings.Contains(warned, "s3cret") {
				t.Fatalf("warnings %q, want %q", s.warnings, tc.warn)
			}
		})
	}
}

func TestScrubArgs(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"sovra", "serve", "--admin-token", "a1", "--node-id", "n"}, []string{"sovra", "serve", "--admin-token", "<redacted>", "--node-id", "n"}},
		{[]string{"sovra", "serve", "--cluster-token=c1", "--admin-token=a1"}, []string{"sovra", "serve", "--cluster-token=<redacted>", "--admin-token=<redacted>"}},
		{[]string{"sovra", "serve", "--admin-token-file", "/run/tok"}, []string{"sovra", "serve", "--admin-token-file", "/run/tok"}},
		{[]string{"sovra", "serve", "--admin-token"}, []string{"sovra", "serve", "--admin-token"}},
	}
	for _, tc := range cases {
		if got := scrubArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q", tc.in, got)
		}
	}
}

// TestDebugCmdlineHidesSecrets serves the profiler on a real loopback
// listener and reads /debug/pprof/cmdline while the process's arguments
// hold both secrets.
func TestDebugCmdlineHidesSecrets(t *testing.T) {
	args := os.Args
	t.Cleanup(func() { os.Args = args })
	os.Args = []string{"sovra", "serve", "--admin-token", "adm-s3cret", "--cluster-token=clu-s3cret", "--node-id", "n1"}
	core, logs := observer.New(zapcore.DebugLevel)
	addr, stop, err := serveDebug("127.0.0.1:0", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	got := strings.Split(string(body), "\x00")
	want := []string{"sovra", "serve", "--admin-token", "<redacted>", "--cluster-token=<redacted>", "--node-id", "n1"}
	if resp.StatusCode != 200 || !slices.Equal(got, want) {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
	if logs.Len() == 0 {
		t.Fatal("the profiler's address was not logged")
	}
}
