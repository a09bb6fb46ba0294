package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sovra/sovra/node"
)

func TestLimitSettings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "limits.yaml")
	if err := os.WriteFile(file, []byte("max-json-depth: 32\nmax-json-values: 5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOVRA_MAX_CONNS", "500")
	t.Setenv("SOVRA_MAX_MESSAGES", "100")
	s, err := parseServe(t, "--node-id", "n", "--config", file, "--max-header-bytes", "65536", "--max-conns-per-ip", "8")
	if err != nil {
		t.Fatal(err)
	}
	def := node.DefaultConfig().Limits
	got := s.node.Limits
	cases := []struct {
		name      string
		got, want int
	}{
		{"flag", got.MaxHeaderBytes, 65536},
		{"flag per ip", got.MaxConnsPerIP, 8},
		{"env", got.MaxConns, 500},
		{"env messages", got.MaxMessages, 100},
		{"file depth", got.MaxJSONDepth, 32},
		{"file values", got.MaxJSONValues, 5000},
		{"default body limit", s.node.MaxBodyBytes, 8 << 20},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
	if def.MaxHeaderBytes != 32<<10 || def.MaxConns != 10000 || def.MaxConnsPerIP != 256 || def.MaxMessages != 4096 {
		t.Errorf("defaults %+v", def)
	}
}

func TestLimitSettingErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{name: "tiny header buffer", args: []string{"--max-header-bytes", "100"}},
		{name: "negative connection cap", args: []string{"--max-conns", "-1"}},
		{name: "negative per-ip cap", args: []string{"--max-conns-per-ip", "-1"}},
		{name: "no messages", args: []string{"--max-messages", "0"}},
		{name: "flat JSON only", args: []string{"--max-json-depth", "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseServe(t, append([]string{"--node-id", "n"}, tc.args...)...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
