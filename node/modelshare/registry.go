package modelshare

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// RoutePrefix is where a node serves its registry to peers: the paths
// under it are those of the registry protocol (/v2/...).
const RoutePrefix = "/internal/v1/registry"

// manifestType is the media type of a model's manifest.
const manifestType = "application/vnd.docker.distribution.manifest.v2+json"

// maxManifest bounds the manifests read from disk.
const maxManifest = 1 << 20

// Registry serves the models of an Ollama models directory, read-only,
// over the registry protocol: GET and HEAD of a manifest
// (/v2/NAMESPACE/NAME/manifests/TAG) and of the blobs it names
// (/v2/NAMESPACE/NAME/blobs/sha256:HEX), with byte ranges. Only models
// of Ollama's default registry are served, and only blobs their manifest
// names. The caller checks who asks (the peer channel).
type Registry struct {
	dir   string
	blobs fasthttp.RequestHandler
}

// NewRegistry serves the Ollama models directory dir (its manifests/ and
// blobs/).
func NewRegistry(dir string) *Registry {
	fsys := &fasthttp.FS{
		Root:            filepath.Join(dir, "blobs"),
		AcceptByteRange: true,
		// The blobs are served as they are: never compressed copies
		// written next to them.
		Compress: false,
		// Each request opens its blob: no cache, and no cleaner
		// goroutine to stop.
		SkipCache: true,
		PathRewrite: func(ctx *fasthttp.RequestCtx) []byte {
			d, _ := ctx.UserValue(blobKey{}).(string)
			return []byte("/" + strings.Replace(d, ":", "-", 1))
		},
	}
	return &Registry{dir: dir, blobs: fsys.NewRequestHandler()}
}

type blobKey struct{}

// Handle answers a registry request; path is the part after RoutePrefix.
func (r *Registry) Handle(c *fiber.Ctx, path string) error {
	m, kind, ref, ok := splitPath(path)
	if !ok {
		return registryError(c, http.StatusNotFound, "NAME_UNKNOWN", "not a registry path")
	}
	manifest, err := r.manifest(m)
	if err != nil {
		return registryError(c, http.StatusNotFound, "MANIFEST_UNKNOWN", "no such model on this node")
	}
	if kind == "manifests" {
		if ref != m.tag {
			return registryError(c, http.StatusNotFound, "MANIFEST_UNKNOWN", "no such model on this node")
		}
		sum := sha256.Sum256(manifest)
		c.Set("Docker-Content-Digest", "sha256:"+hex.EncodeToString(sum[:]))
		c.Set(fiber.HeaderContentType, manifestType)
		return c.Send(manifest)
	}
	if !names(manifest, ref) {
		return registryError(c, http.StatusNotFound, "BLOB_UNKNOWN", "the model names no such blob")
	}
	c.Context().SetUserValue(blobKey{}, ref)
	c.Set("Docker-Content-Digest", ref)
	r.blobs(c.Context())
	return nil
}

// splitPath reads /v2/NS/NAME/(manifests/TAG|blobs/DIGEST); for a blob the
// manifest read is that of tag "latest" unless the query names another.
func splitPath(path string) (model, string, string, bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/v2/"), "/")
	if !strings.HasPrefix(path, "/v2/") || len(parts) != 4 {
		return model{}, "", "", false
	}
	kind, ref := parts[2], parts[3]
	tag := ref
	if kind == "blobs" {
		if !digestPattern.MatchString(ref) {
			return model{}, "", "", false
		}
		tag = "latest"
	} else if kind != "manifests" {
		return model{}, "", "", false
	}
	m, err := parseModel(parts[0] + "/" + parts[1] + ":" + tag)
	return m, kind, ref, err == nil
}

// manifest reads a model's manifest from disk.
func (r *Registry) manifest(m model) ([]byte, error) {
	p := filepath.Join(r.dir, "manifests", "registry.ollama.ai", m.namespace, m.name, m.tag)
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxManifest {
		return nil, fs.ErrNotExist
	}
	return os.ReadFile(p)
}

// names reports whether the manifest names the blob.
func names(manifest []byte, digest string) bool {
	blobs, err := manifestBlobs(manifest)
	return err == nil && slices.Contains(blobs, digest)
}

// registryError answers in the registry protocol's error format.
func registryError(c *fiber.Ctx, status int, code, msg string) error {
	return c.Status(status).JSON(fiber.Map{"errors": []fiber.Map{{"code": code, "message": msg}}})
}

// ErrNoSource is returned when no peer holds a model and no upstream
// registry may be used.
var ErrNoSource = errors.New("no peer could give the model and no upstream registry is allowed (--model-upstream)")
