package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

// DefaultAddr is the node the CLI calls when nothing names one: the
// default --http-addr of `sovra serve` and `sovra dev`.
const DefaultAddr = "http://127.0.0.1:8080"

// localTokenFile is the management token a node on this host made in its
// default data directory; the CLI falls back to it, so that `sovra status`
// works on a node's own host with no setup.
const localTokenFile = "sovra-data/admin-token"

// globals are the flags every admin command has.
type globals struct {
	io IO

	addr, tokenFile, caCert, context string
	output                           string
	noColor                          bool
	requestTimeout                   time.Duration
	idempotencyKey                   string
}

func (g *globals) bind(c *cobra.Command) {
	fs := c.PersistentFlags()
	fs.StringVar(&g.addr, "addr", "", "node to call, host:port or URL (env SOVRA_ADDR; default: the context's, else "+DefaultAddr+")")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the management token or an admin key (env SOVRA_TOKEN holds the token itself; default: the context's)")
	fs.StringVar(&g.caCert, "ca-cert", "", "PEM CA to trust for https (env SOVRA_CA_CERT; default: the context's, else the system's)")
	fs.StringVar(&g.context, "context", "", "cluster context of the context file to use (env SOVRA_CONTEXT; default: the current one)")
	fs.StringVarP(&g.output, "output", "o", "table", "output format: table, wide, json or yaml")
	fs.BoolVar(&g.noColor, "no-color", false, "no colour, even on a terminal (NO_COLOR does the same)")
	fs.DurationVar(&g.requestTimeout, "request-timeout", 30*time.Second, "how long the node may take over each call")
	fs.StringVar(&g.idempotencyKey, "idempotency-key", "", "key of a change, so that rerunning the same command after an unknown outcome cannot apply it twice (default: a new one each run)")
}

// target is the node to call and how.
type target struct {
	addr, token string
	caPEM       []byte
}

// resolve finds the node and credential: flags, then environment, then
// the context file, then the defaults.
func (g *globals) resolve() (target, error) {
	var t target
	ctxName := firstOf(g.context, g.io.Getenv("SOVRA_CONTEXT"))
	cc, err := g.currentContext(ctxName)
	if err != nil {
		return t, err
	}
	t.addr = firstOf(g.addr, g.io.Getenv("SOVRA_ADDR"), cc.Addr, DefaultAddr)
	if t.token, err = g.token(cc); err != nil {
		return t, err
	}
	if ca := firstOf(g.caCert, g.io.Getenv("SOVRA_CA_CERT")); ca != "" {
		if t.caPEM, err = os.ReadFile(ca); err != nil {
			return t, UsageError("--ca-cert: %v", err)
		}
	} else if cc.CACert != "" {
		t.caPEM = []byte(cc.CACert)
	}
	t.addr, err = normalizeAddr(t.addr, t.caPEM != nil)
	return t, err
}

// currentContext is the named context, or the file's current one, or
// none.
func (g *globals) currentContext(name string) (clusterContext, error) {
	f, err := loadContexts(g.io)
	if err != nil {
		return clusterContext{}, err
	}
	if name == "" {
		name = f.Current
	}
	if name == "" {
		return clusterContext{}, nil
	}
	cc, ok := f.Contexts[name]
	if !ok {
		return clusterContext{}, UsageError("no context %q in %s: `sovra context list` lists them", name, contextPath(g.io))
	}
	return *cc, nil
}

func (g *globals) token(cc clusterContext) (string, error) {
	if g.tokenFile != "" {
		return readSecretFile(g.tokenFile, "--token-file")
	}
	if t := strings.TrimSpace(g.io.Getenv("SOVRA_TOKEN")); t != "" {
		return t, nil
	}
	if cc.Token != "" {
		return cc.Token, nil
	}
	if b, err := os.ReadFile(localTokenFile); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// readSecretFile reads a token from a file, trimmed.
func readSecretFile(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", UsageError("%s: %v", what, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", UsageError("%s: %s is empty", what, path)
	}
	return t, nil
}

// normalizeAddr makes a URL of host:port: https when a CA is given.
func normalizeAddr(addr string, tls bool) (string, error) {
	if !strings.Contains(addr, "://") {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		addr = scheme + addr
	}
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		return "", UsageError("address %q: give host:port or an http(s) URL", addr)
	}
	return strings.TrimRight(addr, "/"), nil
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// client returns a client of the resolved node.
func (g *globals) client() (*client.Client, target, error) {
	t, err := g.resolve()
	if err != nil {
		return nil, t, err
	}
	hc, err := httpClient(t.caPEM)
	if err != nil {
		return nil, t, err
	}
	return client.New(t.addr, client.WithToken(t.token), client.WithHTTPClient(hc), client.WithTimeout(g.requestTimeout)), t, nil
}

func httpClient(caPEM []byte) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, UsageError("the CA certificate holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// mutation returns ctx carrying this run's idempotency key: the flag's,
// or a new one, shown in the error when the outcome is unknown.
func (g *globals) mutation(ctx context.Context) context.Context {
	if g.idempotencyKey == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		g.idempotencyKey = hex.EncodeToString(b[:])
	}
	return client.WithIdempotencyKey(ctx, g.idempotencyKey)
}

// contextPath is the context file: SOVRA_CONTEXT_FILE, else
// sovra/contexts.yaml in the user's configuration directory.
func contextPath(sio IO) string {
	if p := sio.Getenv("SOVRA_CONTEXT_FILE"); p != "" {
		return p
	}
	dir := sio.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := sio.Getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "sovra", "contexts.yaml")
}

// describe names the node called, for messages.
func (t target) describe() string { return fmt.Sprintf("the node at %s", t.addr) }
