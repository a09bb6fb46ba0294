package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/internal/version"
	"github.com/sovra/sovra/node"
)

// parseServe resolves the node settings from args as `serve` does.
func parseServe(t *testing.T, args ...string) (*settings, error) {
	t.Helper()
	var s settings
	cmd := &cobra.Command{Use: "serve", SilenceUsage: true, SilenceErrors: true,
		RunE: func(c *cobra.Command, _ []string) error { return s.resolve(c) }}
	s.register(cmd.Flags(), node.DefaultConfig())
	cmd.SetArgs(args)
	return &s, cmd.Execute()
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sovra.yaml")
	os.WriteFile(file, []byte("node-id: from-file\nhttp-addr: 127.0.0.1:7000\nlog-level: debug\nshutdown-grace: 5s\n"), 0o600)
	t.Setenv("SOVRA_HTTP_ADDR", "127.0.0.1:7001")
	t.Setenv("SOVRA_OLLAMA", "http://127.0.0.1:9999")
	s, err := parseServe(t, "--config", file, "--ollama", "http://127.0.0.1:11500")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"file value", s.node.NodeID, "from-file"},
		{"env beats file", s.node.HTTPAddr, "127.0.0.1:7001"},
		{"flag beats env", s.node.OllamaURL, "http://127.0.0.1:11500"},
		{"file log level", s.logLevel, "debug"},
		{"file duration", s.node.ShutdownGrace.String(), "5s"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("colour: blue\n"), 0o600)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "unknown file key", args: []string{"--config", bad}, want: "unknown setting"},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "none.yaml")}, want: "config file"},
		{name: "bad env duration", env: map[string]string{"SOVRA_SHUTDOWN_GRACE": "soon"}, want: "SOVRA_SHUTDOWN_GRACE"},
		{name: "bad address", args: []string{"--http-addr", "nonsense"}, want: "http address"},
		{name: "tiny body limit", args: []string{"--max-body-bytes", "10"}, want: "too small"},
		{name: "unknown routing policy", args: []string{"--routing-policy", "random"}, want: "unknown routing policy"},
		{name: "no slots", args: []string{"--slots", "0"}, want: "slots must be at least 1"},
		{name: "negative queue", env: map[string]string{"SOVRA_QUEUE_MAX": "-1"}, want: "queue size"},
		{name: "slow load exchange", args: []string{"--load-interval", "5s"}, want: "load interval"},
		{name: "busy resync", args: []string{"--raft-addr", "127.0.0.1:0", "--bootstrap", "--resync-interval", "10ms"}, want: "--resync-interval"},
		{name: "cluster without a secret", args: []string{"--raft-addr", "127.0.0.1:0", "--bootstrap"}, want: "a cluster needs a secret"},
		{name: "short secret", args: []string{"--raft-addr", "127.0.0.1:0", "--bootstrap"}, env: map[string]string{"SOVRA_CLUSTER_TOKEN": "short"}, want: "too short"},
		{name: "cluster CA alone", args: []string{"--raft-addr", "127.0.0.1:0", "--bootstrap", "--cluster-ca", "ca.pem"},
			env: map[string]string{"SOVRA_CLUSTER_TOKEN": "0123456789abcdef"}, want: "--cluster-ca given without --cluster-cert, --cluster-key"},
		{name: "API certificate without key", args: []string{"--tls-cert", "api.pem"}, want: "--tls-cert given without --tls-key"},
		{name: "the old mutual TLS flag", args: []string{"--tls-ca", "ca.pem"}, want: "unknown flag: --tls-ca"},
		{name: "auth neither on nor off", args: []string{"--auth", "maybe"}, want: "want on or off"},
		{name: "join address that is no address", args: []string{"--raft-addr", "127.0.0.1:0", "--join", "http//10.0.0.1:8080"},
			env: map[string]string{"SOVRA_CLUSTER_TOKEN": "0123456789abcdef"}, want: "--join: cluster: invalid request: join address \"http//10.0.0.1:8080\""},
		{name: "join address of another scheme", args: []string{"--raft-addr", "127.0.0.1:0", "--join", "raft://10.0.0.1:7000"},
			env: map[string]string{"SOVRA_CLUSTER_TOKEN": "0123456789abcdef"}, want: "want host:port or a URL such as http://10.0.0.1:8080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parseServe(t, append(tc.args, "--node-id", "n")...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	root := newRoot(cli.StdIO())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), version.Version) {
		t.Errorf("version printed %q", out.String())
	}
}

// TestDevFallsBackToSimulator runs `sovra dev` with no Ollama at the given
// URL and gets a streamed answer through the curl line it prints.
func TestDevFallsBackToSimulator(t *testing.T) {
	dead := freeAddr(t) // nothing listens here
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	root := newRoot(cli.StdIO())
	out := &syncBuffer{}
	root.SetOut(out)
	root.SetArgs([]string{"dev", "--http-addr", addr, "--ollama", "http://" + dead, "--log-level", "warn"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev stopped with %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "curl -N") {
		if time.Now().After(deadline) {
			t.Fatalf("dev printed no curl line: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	line := out.String()
	body := line[strings.Index(line, "-d '")+4:]
	body = body[:strings.Index(body, "'")]
	token := bannerToken(t, line)
	if !strings.Contains(line, `curl -N http://`+addr+`/v1/chat/completions -H "Authorization: Bearer $TOKEN"`) ||
		!strings.Contains(line, "export OPENAI_API_KEY=$TOKEN") || !strings.Contains(line, "export SOVRA_TOKEN=$TOKEN SOVRA_ADDR=http://"+addr) {
		t.Fatalf("banner %q", line)
	}
	if st := status(t, "POST", "http://"+addr+"/v1/chat/completions", body, ""); st != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", st)
	}
	resp, err := post("http://"+addr+"/v1/chat/completions", body, token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	if resp.StatusCode != 200 || len(events) < 3 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("status %d, events %q", resp.StatusCode, events)
	}
	// dev forms a one-node cluster of its own.
	for {
		var st struct {
			Leader  string `json:"leader"`
			Members []struct {
				ID    string `json:"id"`
				Voter bool   `json:"voter"`
			} `json:"members"`
		}
		req, _ := http.NewRequest("GET", "http://"+addr+"/admin/v1/cluster", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(r.Body).Decode(&st)
		r.Body.Close()
		if st.Leader == "dev" && len(st.Members) == 1 && st.Members[0].Voter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev has no one-node cluster: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	walkThrough(t, "http://"+addr, token, modelOf(t, body))
}

// walkThrough is the README's "Try it": the admin CLI creates a
// deployment and watches it become ready, status shows it, and a request
// reaches it by its name.
func walkThrough(t *testing.T, url, token, model string) {
	t.Helper()
	env := cliEnv{"SOVRA_TOKEN": token, "SOVRA_ADDR": url, "HOME": t.TempDir()}
	r := sovra(t, env, "deploy", model, "--name", "chat").ok(t)
	if !strings.Contains(r.out, "deployment chat ready: 1/1 replicas") {
		t.Fatalf("deploy:\n%s", r.out)
	}
	r = sovra(t, env, "status").ok(t)
	if !regexp.MustCompile(`(?m)^chat +` + regexp.QuoteMeta(model) + ` +1/1 +ok`).MatchString(r.out) {
		t.Fatalf("status:\n%s", r.out)
	}
	resp, err := post(url+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"Hello!"}]}`, token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK ||
		len(answer.Choices) != 1 || answer.Choices[0].Message.Content == "" {
		t.Fatalf("request to the deployment: %d %+v %v", resp.StatusCode, answer, err)
	}
}

// modelOf is the model of a request body.
func modelOf(t *testing.T, body string) string {
	t.Helper()
	var req struct{ Model string }
	if err := json.Unmarshal([]byte(body), &req); err != nil || req.Model == "" {
		t.Fatalf("no model in %q: %v", body, err)
	}
	return req.Model
}

// getJSON decodes the answer of a GET with token.
func getJSON(t *testing.T, url, token string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(out)
}

// bannerToken is the token in the banner's "export TOKEN=" line.
func bannerToken(t *testing.T, banner string) string {
	t.Helper()
	_, rest, ok := strings.Cut(banner, "export TOKEN=")
	tok, _, _ := strings.Cut(rest, "\n")
	if !ok || len(tok) < 40 {
		t.Fatalf("no token in the banner %q", banner)
	}
	return tok
}

// post sends a JSON body with token as bearer token (none when empty).
func post(url, body, token string) (*http.Response, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return http.DefaultClient.Do(req)
}

// status is the status of a request with a JSON body and token.
func status(t *testing.T, method, url, body, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
