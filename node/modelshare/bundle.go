package modelshare

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
)

// A bundle carries one model between sites with no network between them:
// a tar of bundle.json (what it is), the model's manifest and every blob
// the manifest names, each under blobs/ by digest. Reading a bundle checks
// every digest; importing it has the local Ollama pull the model from a
// registry on loopback that serves the bundle (Ollama checks the digests
// again) and name it.

const bundleFormat = "sovra-model-bundle"

// bundleInfo is bundle.json.
type bundleInfo struct {
	Format   string `json:"format"`
	Version  int    `json:"version"`
	Model    string `json:"model"`
	Manifest string `json:"manifest_digest"`
}

// manifestBlobs lists the digests a manifest names: its config and layers.
func manifestBlobs(manifest []byte) ([]string, error) {
	var m struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	out := []string{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	for _, d := range out {
		if !digestPattern.MatchString(d) {
			return nil, fmt.Errorf("manifest names %q, not a sha256 digest", d)
		}
	}
	return out, nil
}

// ExportBundle writes the model name of the Ollama models directory dir
// to w as a bundle.
func ExportBundle(w io.Writer, dir, name string) error {
	m, err := parseModel(name)
	if err != nil {
		return err
	}
	manifest, err := NewRegistry(dir).manifest(m)
	if err != nil {
		return fmt.Errorf("%s is not in %s: %w", name, dir, err)
	}
	blobs, err := manifestBlobs(manifest)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(manifest)
	info, _ := json.Marshal(bundleInfo{Format: bundleFormat, Version: 1, Model: m.String(), Manifest: "sha256:" + hex.EncodeToString(sum[:])})
	tw := tar.NewWriter(w)
	if err := addBytes(tw, "bundle.json", info); err != nil {
		return err
	}
	if err := addBytes(tw, "manifest.json", manifest); err != nil {
		return err
	}
	for _, d := range dedupe(blobs) {
		if err := addFile(tw, "blobs/"+d, filepath.Join(dir, "blobs", strings.Replace(d, ":", "-", 1))); err != nil {
			return err
		}
	}
	return tw.Close()
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func addBytes(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func addFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// Bundle is a bundle read into a directory laid out as an Ollama models
// directory, every digest checked.
type Bundle struct {
	Dir   string
	Model string
}

// maxBundleMeta bounds bundle.json and the manifest.
const maxBundleMeta = 1 << 20

// ReadBundle reads a bundle from r into dir, checking the manifest's
// digest and every blob's.
func ReadBundle(r io.Reader, dir string) (*Bundle, error) {
	tr := tar.NewReader(r)
	var info bundleInfo
	if err := readJSONEntry(tr, "bundle.json", &info); err != nil {
		return nil, err
	}
	if info.Format != bundleFormat || info.Version != 1 {
		return nil, fmt.Errorf("not a model bundle of this version (format %q, version %d)", info.Format, info.Version)
	}
	m, err := parseModel(info.Model)
	if err != nil {
		return nil, err
	}
	manifest, err := readEntry(tr, "manifest.json")
	if err != nil {
		return nil, err
	}
	if got := digestOf(manifest); got != info.Manifest {
		return nil, fmt.Errorf("manifest digest %s, bundle.json says %s: the bundle is damaged", got, info.Manifest)
	}
	want, err := manifestBlobs(manifest)
	if err != nil {
		return nil, err
	}
	if err := readBlobs(tr, filepath.Join(dir, "blobs"), dedupe(want)); err != nil {
		return nil, err
	}
	mdir := filepath.Join(dir, "manifests", "registry.ollama.ai", m.namespace, m.name)
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(mdir, m.tag), manifest, 0o600); err != nil {
		return nil, err
	}
	return &Bundle{Dir: dir, Model: m.String()}, nil
}

func readEntry(tr *tar.Reader, name string) ([]byte, error) {
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("bundle: reading %s: %w", name, err)
	}
	if h.Name != name || h.Size > maxBundleMeta {
		return nil, fmt.Errorf("bundle: want %s, found %s", name, h.Name)
	}
	return io.ReadAll(tr)
}

func readJSONEntry(tr *tar.Reader, name string, v any) error {
	b, err := readEntry(tr, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("bundle: %s: %w", name, err)
	}
	return nil
}

// readBlobs writes the blobs that follow into dir, each checked against
// its digest; all of want must come.
func readBlobs(tr *tar.Reader, dir string, want []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, d := range want {
		wanted[d] = true
	}
	for len(wanted) > 0 {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("bundle: %d blob(s) the manifest names are missing", len(wanted))
		}
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		d := strings.TrimPrefix(h.Name, "blobs/")
		if !wanted[d] {
			return fmt.Errorf("bundle: unexpected entry %s", h.Name)
		}
		if err := writeBlob(tr, filepath.Join(dir, strings.Replace(d, ":", "-", 1)), d); err != nil {
			return err
		}
		delete(wanted, d)
	}
	return nil
}

func writeBlob(r io.Reader, path, digest string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bundle: blob %s: %w", digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("bundle: blob %s holds data of digest %s: the bundle is damaged", digest, got)
	}
	return nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Import has the local Ollama pull the bundle's model from a registry on
// loopback serving the bundle's directory, under the name as (the
// bundle's own when empty). fn receives the pull's progress.
func (b *Bundle) Import(ctx context.Context, o Ollama, as string, log *zap.Logger, fn func(api.ProgressResponse) error) error {
	m, err := parseModel(b.Model)
	if err != nil {
		return err
	}
	if as == "" {
		as = b.Model
	}
	reg := NewRegistry(b.Dir)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.All(RoutePrefix+"/v2/*", func(c *fiber.Ctx) error { return reg.Handle(c, strings.TrimPrefix(c.Path(), RoutePrefix)) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = app.Listener(ln) }()
	defer app.Shutdown()
	p := &Puller{Ollama: o, Client: http.DefaultClient, Logger: log}
	return p.copyFrom(ctx, Peer{ID: "bundle", URL: "http://" + ln.Addr().String()}, m, as, fn)
}

// ModelsDir is an Ollama models directory: dir when given, else
// Ollama's default ($OLLAMA_MODELS, else ~/.ollama/models).
func ModelsDir(dir string) string {
	if dir != "" {
		return dir
	}
	if d := os.Getenv("OLLAMA_MODELS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ollama", "models")
}

// GGUFCreator is what importing a GGUF file needs of the local Ollama
// (*api.Client).
type GGUFCreator interface {
	CreateBlob(ctx context.Context, digest string, r io.Reader) error
	Create(ctx context.Context, req *api.CreateRequest, fn api.CreateProgressFunc) error
}

// ImportGGUF uploads a GGUF file to the local Ollama and creates the
// model name from it.
func ImportGGUF(ctx context.Context, o GGUFCreator, path, name string) error {
	if _, err := parseModel(name); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != "GGUF" {
		return fmt.Errorf("%s is not a GGUF file", path)
	}
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := o.CreateBlob(ctx, digest, f); err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	stream := false
	return o.Create(ctx, &api.CreateRequest{Model: name, Files: map[string]string{"model.gguf": digest}, Stream: &stream},
		func(api.ProgressResponse) error { return nil })
}
