package modelshare

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
)

func TestParseModel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"llama3.2:1b", "library/llama3.2:1b"},
		{"tiny", "library/tiny:latest"},
		{"acme/coder:7b", "acme/coder:7b"},
		{"../etc/passwd", ""},
		{"a/b/c:1", ""},
		{"x:..", ""},
		{"x:a/b", ""},
		{"", ""},
	} {
		m, err := parseModel(tc.in)
		got := ""
		if err == nil {
			got = m.repo() + ":" + m.tag
		}
		if got != tc.want {
			t.Errorf("parseModel(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

// modelsDir writes an Ollama models directory holding tiny:latest: a
// manifest naming a config blob and a weights blob. It returns the
// directory and the weights' digest and bytes.
func modelsDir(t *testing.T) (string, string, []byte) {
	t.Helper()
	dir := t.TempDir()
	blob := func(data []byte) string {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		must(t, os.MkdirAll(filepath.Join(dir, "blobs"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "blobs", strings.Replace(d, ":", "-", 1)), data, 0o644))
		return d
	}
	weights := []byte(strings.Repeat("weights-", 1000))
	cfg, w := blob([]byte(`{"model_format":"gguf"}`)), blob(weights)
	blob([]byte("a blob no manifest names"))
	manifest := fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q},"layers":[{"digest":%q}]}`, cfg, w)
	mdir := filepath.Join(dir, "manifests", "registry.ollama.ai", "library", "tiny")
	must(t, os.MkdirAll(mdir, 0o755))
	must(t, os.WriteFile(filepath.Join(mdir, "latest"), []byte(manifest), 0o644))
	return dir, w, weights
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serveRegistry runs the registry at RoutePrefix on loopback.
func serveRegistry(t *testing.T, dir string) string {
	t.Helper()
	reg := NewRegistry(dir)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.All(RoutePrefix+"/v2/*", func(c *fiber.Ctx) error { return reg.Handle(c, strings.TrimPrefix(c.Path(), RoutePrefix)) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, method, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	must(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestRegistry(t *testing.T) {
	dir, digest, weights := modelsDir(t)
	base := serveRegistry(t, dir) + RoutePrefix + "/v2/library/tiny"
	st, h, body := get(t, "GET", base+"/manifests/latest")
	if st != 200 || h.Get("Content-Type") != manifestType || !strings.Contains(body, digest) || !strings.HasPrefix(h.Get("Docker-Content-Digest"), "sha256:") {
		t.Fatalf("manifest: %d %v %s", st, h, body)
	}
	if st, _, body = get(t, "GET", base+"/blobs/"+digest); st != 200 || body != string(weights) {
		t.Fatalf("blob: %d, %d bytes", st, len(body))
	}
	if st, h, body = get(t, "GET", base+"/blobs/"+digest, "Range", "bytes=8-15"); st != http.StatusPartialContent || body != "weights-" || h.Get("Content-Range") == "" {
		t.Fatalf("range: %d %q %v", st, body, h)
	}
	if st, h, _ = get(t, "HEAD", base+"/blobs/"+digest); st != 200 || h.Get("Content-Length") != fmt.Sprint(len(weights)) {
		t.Fatalf("head: %d %v", st, h)
	}
	for _, path := range []string{
		"/manifests/other", // no such tag
		"/blobs/sha256:" + strings.Repeat("0", 64),
		"/blobs/" + strings.ToUpper(digest), // not a digest
		"/blobs/../../manifests/latest",
	} {
		if st, _, _ := get(t, "GET", base+path); st != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, st)
		}
	}
	// A blob on disk that the model's manifest does not name.
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs"))
	for _, e := range entries {
		d := strings.Replace(e.Name(), "-", ":", 1)
		data, _ := os.ReadFile(filepath.Join(dir, "blobs", e.Name()))
		if string(data) == "a blob no manifest names" {
			if st, _, _ := get(t, "GET", base+"/blobs/"+d); st != http.StatusNotFound {
				t.Errorf("an unnamed blob: %d, want 404", st)
			}
		}
	}
	if st, _, _ := get(t, "GET", strings.Replace(base, "library/tiny", "library/nope", 1)+"/manifests/latest"); st != http.StatusNotFound {
		t.Errorf("unknown model: %d", st)
	}
}

func TestRelay(t *testing.T) {
	dir, digest, weights := modelsDir(t)
	peer := serveRegistry(t, dir)
	r, err := startRelay(peer, "library/tiny", http.DefaultClient, 0)
	must(t, err)
	defer r.close()
	base := "http://" + r.host() + "/v2/library/tiny"
	if st, _, body := get(t, "GET", base+"/manifests/latest"); st != 200 || !strings.Contains(body, digest) {
		t.Fatalf("manifest through the relay: %d %s", st, body)
	}
	// Ollama's downloader needs a redirect to another host name first.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(base + "/blobs/" + digest)
	must(t, err)
	resp.Body.Close()
	loc, _ := resp.Location()
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == nil || loc.Hostname() != "localhost" {
		t.Fatalf("blob: %d to %v, want 307 to localhost", resp.StatusCode, loc)
	}
	if st, _, body := get(t, "GET", loc.String(), "Range", "bytes=0-7"); st != http.StatusPartialContent || body != string(weights[:8]) {
		t.Fatalf("ranged blob through the relay: %d %q", st, body)
	}
	if st, _, _ := get(t, "GET", "http://"+r.host()+"/v2/library/other/manifests/latest"); st != http.StatusNotFound {
		t.Fatalf("another model through the relay: %d, want 404", st)
	}
	if st, _, _ := get(t, "DELETE", base+"/manifests/latest"); st != http.StatusMethodNotAllowed {
		t.Fatalf("delete through the relay: %d", st)
	}
}

// fakeOllama records the calls a Puller makes.
type fakeOllama struct {
	pulls, copies, deletes []string
	fail                   map[string]error
}

func (f *fakeOllama) Pull(_ context.Context, req *api.PullRequest, _ func(api.ProgressResponse) error) error {
	f.pulls = append(f.pulls, fmt.Sprintf("%s insecure=%v", req.Model, req.Insecure))
	if strings.Contains(req.Model, "/library/") {
		return f.fail["peer"]
	}
	return f.fail["upstream"]
}

func (f *fakeOllama) Copy(_ context.Context, req *api.CopyRequest) error {
	f.copies = append(f.copies, req.Source+" -> "+req.Destination)
	return nil
}

func (f *fakeOllama) Delete(_ context.Context, req *api.DeleteRequest) error {
	f.deletes = append(f.deletes, req.Model)
	return nil
}

func TestPuller(t *testing.T) {
	dir, _, _ := modelsDir(t)
	holder := Peer{ID: "a", URL: serveRegistry(t, dir)}
	empty := Peer{ID: "c", URL: serveRegistry(t, t.TempDir())}
	peers := func(string) []Peer { return []Peer{empty, holder} }
	ctx := context.Background()

	t.Run("from the peer that holds it", func(t *testing.T) {
		o := &fakeOllama{}
		p := &Puller{Ollama: o, Peers: peers, Client: http.DefaultClient, Logger: zap.NewNop()}
		must(t, p.Pull(ctx, "tiny", nil))
		if len(o.pulls) != 1 || !strings.HasSuffix(o.pulls[0], "/library/tiny:latest insecure=true") || len(o.copies) != 1 ||
			!strings.HasSuffix(o.copies[0], " -> tiny") || len(o.deletes) != 1 {
			t.Fatalf("pulls %q copies %q deletes %q", o.pulls, o.copies, o.deletes)
		}
	})
	t.Run("upstream only when allowed", func(t *testing.T) {
		o := &fakeOllama{}
		p := &Puller{Ollama: o, Peers: peers, Client: http.DefaultClient, Logger: zap.NewNop()}
		if err := p.Pull(ctx, "llama3.2:1b", nil); !errors.Is(err, ErrNoSource) || len(o.pulls) != 0 {
			t.Fatalf("no holder, no upstream: %v, pulls %q", err, o.pulls)
		}
		p.Upstream = true
		must(t, p.Pull(ctx, "llama3.2:1b", nil))
		if len(o.pulls) != 1 || o.pulls[0] != "llama3.2:1b insecure=false" {
			t.Fatalf("pulls %q", o.pulls)
		}
	})
	t.Run("a failed copy says why and falls back when allowed", func(t *testing.T) {
		o := &fakeOllama{fail: map[string]error{"peer": errors.New("digest mismatch")}}
		p := &Puller{Ollama: o, Peers: peers, Client: http.DefaultClient, Logger: zap.NewNop()}
		if err := p.Pull(ctx, "tiny", nil); !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), "from a: digest mismatch") {
			t.Fatalf("error %v", err)
		}
		p.Upstream = true
		must(t, p.Pull(ctx, "tiny", nil))
		if o.pulls[len(o.pulls)-1] != "tiny insecure=false" || len(o.copies) != 0 {
			t.Fatalf("pulls %q copies %q", o.pulls, o.copies)
		}
	})
}

func TestBundle(t *testing.T) {
	dir, digest, weights := modelsDir(t)
	var buf strings.Builder
	must(t, ExportBundle(&buf, dir, "tiny"))
	data := buf.String()

	b, err := ReadBundle(strings.NewReader(data), t.TempDir())
	must(t, err)
	got, err := os.ReadFile(filepath.Join(b.Dir, "blobs", strings.Replace(digest, ":", "-", 1)))
	if err != nil || b.Model != "tiny:latest" || string(got) != string(weights) {
		t.Fatalf("read bundle %+v: %v", b, err)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"a blob changed", strings.Replace(data, "weights-weights", "weights-weightz", 1), "damaged"},
		{"the manifest changed", strings.Replace(data, `"schemaVersion":2`, `"schemaVersion":3`, 1), "damaged"},
		{"cut short", data[:len(data)/2], "bundle"},
		{"not a bundle", "hello", "bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadBundle(strings.NewReader(tc.data), t.TempDir()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if err := ExportBundle(io.Discard, dir, "nope"); err == nil {
		t.Fatal("exported a model that is not there")
	}
}
