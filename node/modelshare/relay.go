package modelshare

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// relay is a registry on loopback, for the local Ollama only, that passes
// the requests for one model's repository to a peer's Registry over the
// peer channel. It lives for one pull.
type relay struct {
	srv  *http.Server
	ln   net.Listener
	repo string // namespace/name: nothing else is relayed
	peer string // the peer's base URL, up to RoutePrefix
	hc   *http.Client
	// limit, when set, bounds the bytes per second relayed, over all of
	// Ollama's parallel requests.
	limit *rate.Limiter
}

// relayHeaders are the headers passed between Ollama and the peer.
var relayHeaders = []string{"Range", "Accept", "If-Range", "Content-Length", "Content-Range", "Content-Type",
	"Accept-Ranges", "Docker-Content-Digest", "Etag", "Last-Modified"}

// startRelay listens on 127.0.0.1 and relays repo's requests to peer.
func startRelay(peer, repo string, hc *http.Client, bytesPerSec int64) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, repo: repo, peer: peer, hc: hc}
	if bytesPerSec > 0 {
		r.limit = rate.NewLimiter(rate.Limit(bytesPerSec), int(min(bytesPerSec, limitBurst)))
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// host is the relay's address as Ollama is told it.
func (r *relay) host() string { return r.ln.Addr().String() }

func (r *relay) close() { _ = r.srv.Close() }

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	if !strings.HasPrefix(req.URL.Path, "/v2/"+r.repo+"/") {
		http.NotFound(w, req)
		return
	}
	// Ollama takes a blob from the address a first request redirects it
	// to, and only from an address of another host name: send it from
	// 127.0.0.1 to localhost, the same listener.
	if strings.Contains(req.URL.Path, "/blobs/") && req.Method == http.MethodGet && hostOnly(req.Host) == "127.0.0.1" {
		_, port, _ := net.SplitHostPort(r.host())
		http.Redirect(w, req, "http://localhost:"+port+req.URL.RequestURI(), http.StatusTemporaryRedirect)
		return
	}
	r.pass(w, req)
}

// pass sends the request to the peer and streams its answer back.
func (r *relay) pass(w http.ResponseWriter, req *http.Request) {
	out, err := http.NewRequestWithContext(req.Context(), req.Method, r.peer+RoutePrefix+req.URL.Path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	copyHeaders(out.Header, req.Header)
	resp, err := r.hc.Do(out)
	if err != nil {
		http.Error(w, "peer: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	copyHeaders(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if r.limit != nil {
		body = &limitedReader{ctx: req.Context(), r: resp.Body, limit: r.limit}
	}
	if _, err := io.Copy(w, body); err != nil && !errors.Is(err, context.Canceled) {
		return // Ollama sees the short body and retries the part
	}
}

// limitBurst is the most a limited relay passes at once.
const limitBurst = 64 << 10

// limitedReader reads no faster than its limiter allows.
type limitedReader struct {
	ctx   context.Context
	r     io.Reader
	limit *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > l.limit.Burst() {
		p = p[:l.limit.Burst()]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.limit.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func copyHeaders(dst, src http.Header) {
	for _, h := range relayHeaders {
		if v := src.Get(h); v != "" {
			dst.Set(h, v)
		}
	}
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
