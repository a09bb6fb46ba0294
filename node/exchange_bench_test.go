//go:build linux

package node

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ollamaapi "github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/backend/ollama"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/node/router/load"
)

// BenchmarkLoadExchange measures what the load exchange costs one node.
// It runs N nodes in this process, each with its real API server (Fiber
// over TLS, the peer check of the internal routes), its real router and
// the real exchange code (runLoadExchange), peers on loopback under
// mutual TLS with the cluster certificates. It reports per node:
//
//   - cpu%/node: the process's CPU time with the exchange running, less
//     that of the same nodes and load without it, per node, in percent
//     of one core;
//   - sentB/s, recvB/s: bytes per second on the wire (TLS records
//     included, TCP/IP headers not);
//   - fresh: the share of (node, peer) pairs whose view of the peer was
//     Fresh, sampled through the window.
//
// "idle" nodes serve nothing (each served one request per model before,
// so its report lists them); "busy" ones each start -exchange.rate
// requests a second, on one of two models, each holding a slot 0.5-1.5 s,
// so their running counts, averages and published prefixes keep changing.
//
//	go test -run '^$' -bench LoadExchange -benchtime 1x ./node/
//	go test -run '^$' -bench 'LoadExchange/nodes=200/' -benchtime 1x ./node/ -args -exchange.window=10s
func BenchmarkLoadExchange(b *testing.B) {
	for _, n := range []int{5, 20, 50, 200} {
		for _, busy := range []bool{false, true} {
			mode := "idle"
			if busy {
				mode = "busy"
			}
			b.Run(fmt.Sprintf("nodes=%d/%s", n, mode), func(b *testing.B) { benchExchange(b, n, busy) })
		}
	}
}

var (
	exchangeWindow = flag.Duration("exchange.window", 5*time.Second, "measuring window of each BenchmarkLoadExchange point")
	exchangeRate   = flag.Float64("exchange.rate", 4, "requests a second each busy node starts in BenchmarkLoadExchange")
)

// exchangeModels are the models the benchmark's nodes serve.
var exchangeModels = []string{"m0:latest", "m1:latest"}

func benchExchange(b *testing.B, n int, busy bool) {
	c := startExchangeCluster(b, n)
	defer c.stop()
	c.warm()
	if busy {
		stop := c.drive(*exchangeRate)
		defer stop()
	}
	base := c.measure(*exchangeWindow)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Go(func() { runLoadExchange(ctx, c.deps(nd)) })
	}
	defer func() { cancel(); wg.Wait() }()
	if !c.waitFresh(2 * time.Minute) {
		b.Fatalf("the %d nodes' views never became fresh", n)
	}
	time.Sleep(2 * time.Second) // let the connections' start-up end
	got := c.measure(*exchangeWindow)

	perNode := func(v float64) float64 { return v / float64(n) / got.wall.Seconds() }
	b.ReportMetric(100*max(got.cpu-base.cpu, 0).Seconds()/float64(n)/got.wall.Seconds(), "cpu%/node")
	b.ReportMetric(100*base.cpu.Seconds()/float64(n)/base.wall.Seconds(), "base-cpu%/node")
	b.ReportMetric(perNode(float64(got.sent-base.sent)), "sentB/s/node")
	b.ReportMetric(perNode(float64(got.recv-base.recv)), "recvB/s/node")
	b.ReportMetric(got.fresh, "fresh")
}

// exchangeCluster is the benchmark's nodes.
type exchangeCluster struct {
	tb    testing.TB
	nodes []*exchangeNode
	// requests counts the busy load's requests, for unique prompts.
	wg sync.WaitGroup
}

// exchangeNode is one node: its API server over a metered TLS listener,
// its router over a backend that holds each request a while, and a peer
// client that meters its connections.
type exchangeNode struct {
	id     string
	addr   string
	router *router.Router
	api    *api.Server
	hc     *http.Client
	meter  *byteMeter
	peers  []load.Peer
}

func startExchangeCluster(tb testing.TB, n int) *exchangeCluster {
	ca := newBenchCA(tb)
	c := &exchangeCluster{tb: tb}
	for i := range n {
		c.nodes = append(c.nodes, startExchangeNode(tb, ca, fmt.Sprintf("n%03d", i)))
	}
	for _, nd := range c.nodes {
		for _, p := range c.nodes {
			if p != nd {
				nd.peers = append(nd.peers, load.Peer{ID: p.id, Addr: p.addr})
			}
		}
	}
	return c
}

func startExchangeNode(tb testing.TB, ca *benchCA, id string) *exchangeNode {
	keys := ca.keyring(tb, id)
	nd := &exchangeNode{id: id, meter: &byteMeter{}}
	nd.router = router.New(id, holdBackend{}, nil, nil).WithConfig(router.Config{Slots: 4, ServeUndeployed: true})
	nd.api = api.New(api.Config{PeerID: keys.ConnPeerID, MaxHeaderBytes: 8 << 10}, nd.router, nil, zap.NewNop())
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	nd.addr = raw.Addr().String()
	ln := tls.NewListener(meteredListener{Listener: raw, m: nd.meter}, listenerConfig{keys: keys}.tlsConfig())
	go func() { _ = nd.api.Serve(ln) }()

	t := ollama.NewTransport()
	t.TLSClientConfig = keys.ClientConfig(cluster.ServerName)
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return meteredConn{Conn: conn, m: nd.meter}, nil
	}
	nd.hc = &http.Client{Transport: peerHeaders{base: t}}
	return nd
}

// deps are what runLoadExchange needs of nd.
func (c *exchangeCluster) deps(nd *exchangeNode) loadDeps {
	return loadDeps{hc: nd.hc, scheme: "https", router: nd.router, peers: func() []load.Peer { return nd.peers },
		interval: load.DefaultInterval, log: zap.NewNop()}
}

// warm has every node serve one request of each model, so that its
// reports list them with their averages.
func (c *exchangeCluster) warm() {
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		for _, m := range exchangeModels {
			wg.Go(func() { c.chat(nd, m, "warm", 0) })
		}
	}
	wg.Wait()
}

// chat sends one chat to nd's router, held hold by the backend.
func (c *exchangeCluster) chat(nd *exchangeNode, model, prompt string, hold time.Duration) {
	req := &ollamaapi.ChatRequest{Model: model, Messages: []ollamaapi.Message{{Role: "user", Content: prompt}},
		Options: map[string]any{holdOption: hold.Milliseconds()}}
	if err := nd.router.Chat(context.Background(), req, func(ollamaapi.ChatResponse) error { return nil }); err != nil {
		c.tb.Error(err)
	}
}

// drive starts rate requests a second on every node until stop.
func (c *exchangeCluster) drive(rate float64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		wg.Go(func() {
			every := time.Duration(float64(time.Second) / rate)
			// Start the nodes' tickers spread over one period.
			time.Sleep(every * time.Duration(i) / time.Duration(len(c.nodes)))
			t := time.NewTicker(every)
			defer t.Stop()
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				case <-t.C:
				}
				hold := 500*time.Millisecond + time.Duration(k*7919%1000)*time.Millisecond
				prompt := nd.id + " conversation " + strconv.Itoa(k)
				wg.Go(func() { c.chat(nd, exchangeModels[k%len(exchangeModels)], prompt, hold) })
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

// window is what one measuring window saw.
type window struct {
	wall, cpu  time.Duration
	sent, recv int64
	fresh      float64
}

// measure samples the process's CPU time and the nodes' bytes over d,
// and how fresh their views were.
func (c *exchangeCluster) measure(d time.Duration) window {
	start, cpu0 := time.Now(), processCPU()
	sent0, recv0 := c.bytes()
	var fresh float64
	const samples = 5
	for range samples {
		time.Sleep(d / samples)
		fresh += c.freshShare() / samples
	}
	sent1, recv1 := c.bytes()
	return window{wall: time.Since(start), cpu: processCPU() - cpu0, sent: sent1 - sent0, recv: recv1 - recv0, fresh: fresh}
}

func (c *exchangeCluster) bytes() (sent, recv int64) {
	for _, nd := range c.nodes {
		sent += nd.meter.sent.Load()
		recv += nd.meter.recv.Load()
	}
	return sent, recv
}

// freshShare is the share of (node, peer) pairs whose view is Fresh.
func (c *exchangeCluster) freshShare() float64 {
	fresh, all := 0, 0
	for _, nd := range c.nodes {
		v := nd.router.View()
		for _, p := range nd.peers {
			all++
			if v.Health(p.ID) == load.Fresh {
				fresh++
			}
		}
	}
	if all == 0 {
		return 1
	}
	return float64(fresh) / float64(all)
}

// waitFresh waits until every node sees every peer Fresh.
func (c *exchangeCluster) waitFresh(limit time.Duration) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if c.freshShare() == 1 {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func (c *exchangeCluster) stop() {
	for _, nd := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = nd.api.Shutdown(ctx)
		cancel()
		nd.hc.CloseIdleConnections()
		nd.router.Close()
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// holdOption is the request option that tells holdBackend how long to
// hold a request, in milliseconds (a sampling option the router passes).
const holdOption = "seed"

// holdBackend answers every chat with one final chunk after holding it
// for its holdOption; everything else is unsupported.
type holdBackend struct{}

func (holdBackend) Chat(ctx context.Context, req *ollamaapi.ChatRequest, fn func(ollamaapi.ChatResponse) error) error {
	ms, _ := req.Options[holdOption].(int64)
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return fn(ollamaapi.ChatResponse{Model: req.Model, Done: true, Message: ollamaapi.Message{Role: "assistant", Content: "ok"},
		Metrics: ollamaapi.Metrics{EvalCount: 24, EvalDuration: max(time.Duration(ms)*time.Millisecond, time.Millisecond)}})
}

func (holdBackend) Generate(context.Context, *ollamaapi.GenerateRequest, func(ollamaapi.GenerateResponse) error) error {
	return backend.ErrUnavailable
}

func (holdBackend) Embed(context.Context, *ollamaapi.EmbedRequest) (*ollamaapi.EmbedResponse, error) {
	return nil, backend.ErrUnavailable
}

func (holdBackend) List(context.Context) (*ollamaapi.ListResponse, error) {
	return &ollamaapi.ListResponse{}, nil
}

func (holdBackend) ListRunning(context.Context) (*ollamaapi.ProcessResponse, error) {
	return &ollamaapi.ProcessResponse{}, nil
}

func (holdBackend) Show(context.Context, *ollamaapi.ShowRequest) (*ollamaapi.ShowResponse, error) {
	return nil, backend.ErrUnavailable
}

func (holdBackend) Pull(context.Context, *ollamaapi.PullRequest, func(ollamaapi.ProgressResponse) error) error {
	return backend.ErrUnavailable
}

func (holdBackend) Delete(context.Context, *ollamaapi.DeleteRequest) error {
	return backend.ErrUnavailable
}
func (holdBackend) Copy(context.Context, *ollamaapi.CopyRequest) error { return backend.ErrUnavailable }
func (holdBackend) Version(context.Context) (string, error)            { return "0.0.0", nil }
func (holdBackend) Heartbeat(context.Context) error                    { return nil }

// byteMeter counts one node's bytes on the wire.
type byteMeter struct{ sent, recv atomic.Int64 }

type meteredConn struct {
	net.Conn
	m *byteMeter
}

func (c meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.recv.Add(int64(n))
	return n, err
}

func (c meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.sent.Add(int64(n))
	return n, err
}

type meteredListener struct {
	net.Listener
	m *byteMeter
}

func (l meteredListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return meteredConn{Conn: conn, m: l.m}, nil
}

// benchCA issues the benchmark nodes' cluster certificates.
type benchCA struct{ ca *pki.CA }

func newBenchCA(tb testing.TB) *benchCA {
	ca, err := pki.NewCA("sovra benchmark CA")
	if err != nil {
		tb.Fatal(err)
	}
	return &benchCA{ca: ca}
}

// keyring holds id's cluster certificate.
func (b *benchCA) keyring(tb testing.TB, id string) *pki.Keyring {
	key, err := pki.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, err := b.ca.Issue(id, key.Public(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	creds, err := pki.FromPEM(id, b.ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	keys := &pki.Keyring{}
	keys.Set(creds)
	return keys
}
