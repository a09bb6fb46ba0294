package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

func TestParseModels(t *testing.T) {
	file := filepath.Join(t.TempDir(), "models.json")
	content := `[{"name":"big:70b","size":40000000000,"ttft":"250ms","tokens_per_second":12,"parallel":2,"thinking":true}]`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"name":"x","ttft":"soon"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    string
		want    []ollamasim.ModelConfig
		wantErr bool
	}{
		{name: "default", spec: "default", want: ollamasim.DefaultModels()},
		{name: "none", spec: "none", want: []ollamasim.ModelConfig{}},
		{name: "names", spec: "llama3.2:1b, my-embed", want: []ollamasim.ModelConfig{
			ollamasim.DefaultModels()[0], {Name: "my-embed", Embedding: true},
		}},
		{name: "registry name", spec: "qwen3:0.6b", want: ollamasim.DefaultRegistry()[:1]},
		{name: "file", spec: "@" + file, want: []ollamasim.ModelConfig{{
			Name: "big:70b", Size: 40_000_000_000, TTFT: 250 * time.Millisecond, TokensPerSecond: 12, Parallel: 2, Thinking: true,
		}}},
		{name: "bad duration", spec: "@" + bad, wantErr: true},
		{name: "missing file", spec: "@" + file + ".missing", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseModels(tc.spec, ollamasim.DefaultModels())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(got) != len(tc.want) || got == nil {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("model %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*options) bool
		wantErr bool
	}{
		{name: "defaults", args: nil, check: func(o *options) bool {
			return o.addr == "127.0.0.1:11434" && o.cfg.Faults == ollamasim.Faults{FailStatus: 500} && len(o.cfg.Models) == 3
		}},
		{name: "faults", args: []string{"--fail", "--drop-after", "0", "--stall-after", "4", "--fault-model", "x"}, check: func(o *options) bool {
			f := o.cfg.Faults
			return f.Fail && f.Drop && f.DropAfter == 0 && f.Stall && f.StallAfter == 4 && f.Model == "x"
		}},
		{name: "loaded and prefix cache", args: []string{"--models", "a,b", "--loaded", "b", "--prefix-cache", "3"}, check: func(o *options) bool {
			m := o.cfg.Models
			return len(m) == 2 && !m[0].Loaded && m[1].Loaded && m[0].PrefixCache == 3
		}},
		{name: "loaded unknown", args: []string{"--models", "a", "--loaded", "b"}, wantErr: true},
		{name: "stray argument", args: []string{"serve"}, wantErr: true},
		{name: "bad flag", args: []string{"--nope"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && !tc.check(o) {
				t.Errorf("options %+v do not match", o)
			}
		})
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		args := []string{"--addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--ttft", "0", "--load", "0",
			"--tokens-per-second", "0", "--models", "llama3.2:1b", "--loaded", "llama3.2:1b"}
		done <- run(ctx, args, w, io.Discard)
		w.Close()
	}()
	lines := bufio.NewScanner(out)
	apiURL := readURL(t, lines, "listening on ")
	controlURL := readURL(t, lines, "control on ")
	go func() { _, _ = io.Copy(io.Discard, out) }()

	u, _ := url.Parse(apiURL)
	c := api.NewClient(u, http.DefaultClient)
	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 1 || ps.Models[0].Name != "llama3.2:1b" {
		t.Fatalf("ps: %+v %v, want llama3.2:1b loaded", ps, err)
	}
	err = c.Chat(ctx, &api.ChatRequest{Model: "llama3.2:1b", Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(api.ChatResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(controlURL + "stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("control stats: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop on cancellation")
	}
}

// readURL scans output lines until one contains marker and returns the
// URL after it.
func readURL(t *testing.T, lines *bufio.Scanner, marker string) string {
	t.Helper()
	for lines.Scan() {
		if _, after, ok := strings.Cut(lines.Text(), marker); ok {
			return strings.TrimSpace(after)
		}
	}
	t.Fatalf("no line with %q: %v", marker, lines.Err())
	return ""
}
