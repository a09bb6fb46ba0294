package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden --help files in testdata/help")

// TestHelpGolden keeps the interface of the top-level command and some
// subcommands as it is, unless changed on purpose: rerun with -update
// and review the diff of testdata/help.
func TestHelpGolden(t *testing.T) {
	for _, args := range [][]string{
		{"--help"},
		{"deploy", "--help"},
		{"deployment", "scale", "--help"},
		{"status", "--help"},
		{"node", "drain", "--help"},
		{"key", "create", "--help"},
	} {
		name := strings.Join(strings.Fields(strings.ReplaceAll(strings.Join(args, " "), "--help", "")), "-")
		if name == "" {
			name = "sovra"
		}
		t.Run(name, func(t *testing.T) {
			r := sovra(t, cliEnv{}, args...).ok(t)
			path := filepath.Join("testdata", "help", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(r.out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/sovra -run TestHelpGolden -update)", err)
			}
			if r.out != string(want) {
				t.Fatalf("sovra %s changed; if on purpose, rerun with -update.\ngot:\n%s\nwant:\n%s", strings.Join(args, " "), r.out, want)
			}
		})
	}
}
