package node_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// TestAdminWritesRefuseBrowserForms: a page on another site can make a
// browser post a text/plain form to POST /admin/v1/deployments, without
// an Authorization header. Each way such a request can come is refused,
// and nothing is created.
func TestAdminWritesRefuseBrowserForms(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	n := testnode.Start(t, sim.URL(), placed("solo", "1xL40S:48GiB", "jurisdiction=EU"))
	waitView(t, n.URL(), allReady(1))
	form := `{"name":"evil","model":"llama3.2:1b","ignore":"=x"}`
	cases := []struct {
		name   string
		header map[string]string
		want   int
		code   string
	}{
		{"a form post carries no token", map[string]string{"Content-Type": "text/plain"}, http.StatusUnauthorized, "invalid_api_key"},
		{"the cluster token is not an operator's", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}, http.StatusUnauthorized, "invalid_api_key"},
		{"text/plain even with the token", map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + testnode.Token}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"url-encoded form with the token", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer " + testnode.Token}, http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"another site's origin", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + testnode.Token, "Origin": "https://evil.example"}, http.StatusForbidden, "origin_not_allowed"},
		{"a rebound host name", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + testnode.Token, "Host": "evil.example"}, http.StatusForbidden, "host_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", n.URL()+"/admin/v1/deployments", strings.NewReader(form))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			req.Host = tc.header["Host"]
			resp, err := http.DefaultClient.Do(req) // with only the headers above
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			st := resp.StatusCode
			if st != tc.want || !strings.Contains(string(body), tc.code) {
				t.Fatalf("status %d, want %d %s: %s", st, tc.want, tc.code, body)
			}
			if st := admin(t, "GET", n.URL()+"/admin/v1/deployments/evil", "", nil); st != http.StatusNotFound {
				t.Fatalf("the refused post created the deployment: %d", st)
			}
		})
	}
	if st := admin(t, "POST", n.URL()+"/admin/v1/deployments", form, nil); st != http.StatusCreated {
		t.Fatalf("the operator's own JSON post: %d", st)
	}
}

// TestNodeMakesAndKeepsItsAdminToken: a node given no management token
// makes one in <data-dir>/admin-token (mode 0600), logs the file's path
// and not the token, and reads the same token after a restart.
func TestNodeMakesAndKeepsItsAdminToken(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	dir := t.TempDir()
	path := filepath.Join(dir, node.AdminTokenFile)
	var tokens []string
	for range 2 {
		core, logs := observer.New(zapcore.DebugLevel)
		n := startLogged(t, sim.URL(), zap.New(core), func(c *node.Config) { c.DataDir, c.AdminToken = dir, "" })
		info, err := os.Stat(path)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("token file: %v %v", info, err)
		}
		raw, _ := os.ReadFile(path)
		tok := strings.TrimSpace(string(raw))
		tokens = append(tokens, tok)
		if st := bearerStatus(t, n.URL()+"/v1/models", tok); st != http.StatusOK {
			t.Fatalf("the file's token: %d", st)
		}
		if st := bearerStatus(t, n.URL()+"/v1/models", testnode.Token); st != http.StatusUnauthorized {
			t.Fatalf("another token: %d", st)
		}
		stopNode(t, n)
		if logs.FilterField(zap.String("file", path)).Len() == 0 {
			t.Errorf("the log does not name the token file")
		}
		noSecretLogged(t, logs, tok)
	}
	if tokens[0] != tokens[1] || len(tokens[0]) < 40 {
		t.Fatalf("tokens %q", tokens)
	}
}

// TestSecretsStayOutOfTheLog watches every log entry of a clustered node
// through its start, a request with a wrong token, one with the right
// token and its stop: none holds the management token or the cluster
// token.
func TestSecretsStayOutOfTheLog(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	core, logs := observer.New(zapcore.DebugLevel)
	n := startLogged(t, sim.URL(), zap.New(core), placed("solo", "1xL40S:48GiB", "jurisdiction=EU"))
	waitView(t, n.URL(), allReady(1))
	for _, path := range []string{"/v1/models", "/admin/v1/cluster"} {
		if st := bearerStatus(t, n.URL()+path, token); st != http.StatusUnauthorized {
			t.Fatalf("%s with the cluster token: %d", path, st)
		}
		if st := bearerStatus(t, n.URL()+path, testnode.Token); st != http.StatusOK {
			t.Fatalf("%s with the management token: %d", path, st)
		}
	}
	stopNode(t, n)
	if logs.FilterMessage("request").Len() < 4 {
		t.Fatalf("the requests were not logged: %d entries", logs.Len())
	}
	noSecretLogged(t, logs, testnode.Token, token)
}

// startLogged starts a node as testnode.Start does, logging to log.
func startLogged(t *testing.T, ollamaURL string, log *zap.Logger, edit ...func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.HTTPAddr, cfg.OllamaURL, cfg.DataDir = "test", "127.0.0.1:0", ollamaURL, t.TempDir()
	cfg.AdminToken = testnode.Token
	for _, e := range edit {
		e(&cfg)
	}
	n, err := node.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop(context.Background()) })
	return n
}

func stopNode(t *testing.T, n *node.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// bearerStatus is the status of a GET of url with tok as bearer token.
func bearerStatus(t *testing.T, url, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	st, _, _ := send(t, req)
	return st
}

// noSecretLogged fails the test if any logged message or field holds one
// of secrets.
func noSecretLogged(t *testing.T, logs *observer.ObservedLogs, secrets ...string) {
	t.Helper()
	enc := zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig())
	for _, e := range logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(buf.String(), s) {
				t.Errorf("a log entry holds a secret: %s", buf.String())
			}
		}
		buf.Free()
	}
}
