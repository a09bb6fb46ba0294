package bench

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// LeastConnProxy is the least-connections baseline of the routing
// benchmark: a reverse proxy, like nginx's least_conn upstream, that sends
// each request to the backend with the fewest requests in flight through
// it, ties going round-robin. It knows nothing of speeds, queues or
// caches: only its own open requests. It names the backend it chose in
// the response header Header.
type LeastConnProxy struct {
	// Header is the response header that names the chosen backend.
	Header string

	names   []string
	proxies []*httputil.ReverseProxy

	mu     sync.Mutex
	active []int
	next   int
}

// NewLeastConnProxy returns a proxy over the backends at the base URLs,
// named by names (same length).
func NewLeastConnProxy(header string, names []string, urls []*url.URL) *LeastConnProxy {
	t := &http.Transport{
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 2048,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	p := &LeastConnProxy{Header: header, names: names, active: make([]int, len(urls))}
	for _, u := range urls {
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = t
		rp.FlushInterval = -1 // pass every chunk of a stream on at once
		p.proxies = append(p.proxies, rp)
	}
	return p
}

// ServeHTTP forwards r to the least-loaded backend.
func (p *LeastConnProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := p.acquire()
	defer p.release(i)
	if p.Header != "" {
		w.Header().Set(p.Header, p.names[i])
	}
	p.proxies[i].ServeHTTP(w, r)
}

// acquire picks the backend with the fewest requests in flight, scanning
// from the one after the last pick so that ties rotate, and counts one
// more there.
func (p *LeastConnProxy) acquire() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.active)
	best := -1
	for k := range n {
		i := (p.next + k) % n
		if best < 0 || p.active[i] < p.active[best] {
			best = i
		}
	}
	p.active[best]++
	p.next = (best + 1) % n
	return best
}

func (p *LeastConnProxy) release(i int) {
	p.mu.Lock()
	p.active[i]--
	p.mu.Unlock()
}

// Active returns the requests in flight per backend.
func (p *LeastConnProxy) Active() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.active...)
}
