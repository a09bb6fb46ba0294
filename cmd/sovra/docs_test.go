package main

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/sovra/sovra/cmd/sovra/cli"
)

// TestOperationsGuideCommands checks every sovra command line of the
// operations guide against the real command tree: the command exists, its
// flags parse and it gets as many arguments as it takes.
func TestOperationsGuideCommands(t *testing.T) {
	lines := guideCommands(t, "../../docs/operations.md")
	if len(lines) < 20 {
		t.Fatalf("found only %d sovra commands in the guide", len(lines))
	}
	for _, line := range lines {
		t.Run(line, func(t *testing.T) {
			root := newRoot(cli.StdIO())
			args := strings.Fields(line)[1:]
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == root {
				t.Fatalf("no such command: %v", err)
			}
			if cmd.HasSubCommands() {
				t.Fatalf("%s is a group: name one of its commands", cmd.CommandPath())
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatalf("flags: %v", err)
			}
			if cmd.Args != nil {
				if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
					t.Fatalf("arguments: %v", err)
				}
			}
		})
	}
}

// guideCommands are the lines of the guide's sh blocks that run sovra,
// with a shell substitution such as $(date +%F) made one word.
func guideCommands(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "```"):
			in = line == "```sh"
		case in && strings.HasPrefix(line, "sovra "):
			out = append(out, strings.ReplaceAll(line, "$(date +%F)", "DATE"))
		}
	}
	return out
}
