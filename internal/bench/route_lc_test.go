package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// TestLeastConnProxy checks the baseline's rule: each request goes to the
// backend with the fewest requests in flight through the proxy, ties in
// turn, and the answer names it and passes the body through.
func TestLeastConnProxy(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan string, 8)
	urls := holdingBackends(t, release, entered)
	p := NewLeastConnProxy("Backend", []string{"a", "b"}, urls)
	front := httptest.NewServer(p)
	defer front.Close()

	get := func(path string) (string, string) {
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Error(err)
			return "", ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("Backend"), string(b)
	}
	held := make(chan string, 1)
	go func() { name, _ := get("/hold"); held <- name }()
	first := <-entered
	if !slices.Equal(p.Active(), []int{1, 0}) && !slices.Equal(p.Active(), []int{0, 1}) {
		t.Fatalf("active %v with one request held", p.Active())
	}
	// While one backend holds a request, every other goes to the other.
	for range 3 {
		name, body := get("/")
		<-entered
		if name == first || body != "from "+name {
			t.Fatalf("a request went to %q (%q) while %s held one", name, body, first)
		}
	}
	close(release)
	if name := <-held; name != first {
		t.Fatalf("the held request was answered by %q, entered %q", name, first)
	}
	// Idle, ties rotate.
	a, _ := get("/")
	b, _ := get("/")
	<-entered
	<-entered
	if a == b {
		t.Fatalf("idle backends did not take turns: %q then %q (active %v)", a, b, p.Active())
	}
	// The proxy counts a request done after its client read the answer.
	testwait.For(t, 5*time.Second, "no request active", func() bool { return slices.Equal(p.Active(), []int{0, 0}) })
}

// TestLeastConnProxiesCountApart checks that two proxies over the same
// backends keep apart counts, as least-connections balancers on two hosts
// do: while proxy A holds a request on the first backend, proxy B, with
// nothing of its own in flight, still picks the first backend.
func TestLeastConnProxiesCountApart(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan string, 8)
	urls := holdingBackends(t, release, entered)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	names := []string{"a", "b"}
	pa, pb := NewLeastConnProxy("Backend", names, urls), NewLeastConnProxy("Backend", names, urls)
	fa, fb := httptest.NewServer(pa), httptest.NewServer(pb)
	defer fa.Close()
	defer fb.Close()
	defer free() // before the servers close, should the test stop early
	get := func(base, path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Error(err)
			return ""
		}
		defer resp.Body.Close()
		_, _ = io.ReadAll(resp.Body)
		return resp.Header.Get("Backend")
	}
	held := make(chan string, 1)
	go func() { held <- get(fa.URL, "/hold") }()
	if first := <-entered; first != "a" {
		t.Fatalf("proxy A's first request went to %q, want a", first)
	}
	if !slices.Equal(pa.Active(), []int{1, 0}) || !slices.Equal(pb.Active(), []int{0, 0}) {
		t.Fatalf("active: A %v, B %v", pa.Active(), pb.Active())
	}
	// B does not see A's request: its own first pick is backend a too.
	if got := get(fb.URL, "/"); got != "a" {
		t.Fatalf("proxy B sent its first request to %q while A held one on a; want a (B counts only its own)", got)
	}
	<-entered
	// A does: its next goes to b.
	if got := get(fa.URL, "/"); got != "b" {
		t.Fatalf("proxy A sent to %q while it held one on a", got)
	}
	<-entered
	free()
	if got := <-held; got != "a" {
		t.Fatalf("held request answered by %q", got)
	}
	testwait.For(t, 5*time.Second, "no request active", func() bool {
		return slices.Equal(pa.Active(), []int{0, 0}) && slices.Equal(pb.Active(), []int{0, 0})
	})
}

// holdingBackends starts backends a and b, which tell entered of each
// request and hold one for /hold until release closes. They close when
// the test ends, after its deferred calls (a held request must be
// released first).
func holdingBackends(t *testing.T, release <-chan struct{}, entered chan<- string) []*url.URL {
	t.Helper()
	var urls []*url.URL
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- name
			if r.URL.Path == "/hold" {
				<-release
			}
			_, _ = io.WriteString(w, "from "+name)
		}))
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL)
		urls = append(urls, u)
	}
	return urls
}
