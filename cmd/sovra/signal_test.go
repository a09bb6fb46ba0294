package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testbin"
)

// TestServeDrainsOnSIGTERM runs the real binary, starts a stream, sends
// SIGTERM and checks that the stream still completes and the process exits
// cleanly.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	bin := testbin.Sovra(t)
	// 30 tokens at 20/s: the stream lasts about 1.5 s.
	sim := ollamasim.StartTest(t, ollamasim.Config{TokensPerSecond: 20, ResponseTokens: 30})
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dataDir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "serve", "--node-id", "n1", "--http-addr", addr, "--ollama", sim.URL(), "--serve-undeployed",
		"--data-dir", dataDir, "--log-format", "json", "--shutdown-grace", "20s")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, "http://"+addr+"/healthz")
	token := madeToken(t, filepath.Join(dataDir, "admin-token"), logs)

	body := `{"model":"llama3.2:1b","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := post("http://"+addr+"/v1/chat/completions", body, token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.Fatal("no first event")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	last := ""
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			last = d
		}
	}
	if last != "[DONE]" {
		t.Fatalf("the in-flight stream was cut by SIGTERM; last event %q", last)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs)
	}
	if strings.Contains(logs.String(), token) {
		t.Fatalf("the log holds the management token:\n%s", logs)
	}
}

// madeToken is the management token `serve` made in path (mode 0600),
// after checking that its log names the file.
func madeToken(t *testing.T, path string, logs *syncBuffer) string {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v %v", path, info, err)
	}
	raw, _ := os.ReadFile(path)
	quoted, _ := json.Marshal(path)
	if !strings.Contains(logs.String(), `"file":`+string(quoted)) {
		t.Fatalf("the log does not name %s:\n%s", path, logs)
	}
	return strings.TrimSpace(string(raw))
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
