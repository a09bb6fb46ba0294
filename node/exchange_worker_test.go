//go:build linux

package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
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

// workerEnv carries a worker's configuration (JSON): BenchmarkLoadExchange
// runs this test binary again, as TestLoadExchangeWorker, to host nodes.
const workerEnv = "SOVRA_EXCHANGE_WORKER"

// workerConfig says which nodes a worker runs.
type workerConfig struct {
	CADir string  `json:"ca_dir"`
	First int     `json:"first"`
	Count int     `json:"count"`
	Busy  bool    `json:"busy"`
	Rate  float64 `json:"rate"`
	Log   bool    `json:"log"`
	// Measured: nodes n000 up to this one, excluded, watch every node;
	// the others watch only them.
	Measured int `json:"measured"`
	// FrameBudget paces the worker's feeds (0: the default).
	FrameBudget float64 `json:"frame_budget,omitempty"`
	// Profile, when set, is where the worker writes a CPU profile of
	// the time the exchange runs.
	Profile string `json:"profile,omitempty"`
}

// TestLoadExchangeWorker is one worker process of BenchmarkLoadExchange;
// it is skipped unless that benchmark started it.
func TestLoadExchangeWorker(t *testing.T) {
	raw := os.Getenv(workerEnv)
	if raw == "" {
		t.Skip("runs only as a worker of BenchmarkLoadExchange")
	}
	var cfg workerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	c := startExchangeCluster(t, cfg)
	defer c.stop()
	out := json.NewEncoder(os.Stdout)
	addrs := map[string]string{}
	for _, nd := range c.nodes {
		addrs[nd.id] = nd.addr
	}
	_ = out.Encode(workerReply{Addrs: addrs})
	c.serve(bufio.NewScanner(os.Stdin), out)
}

// serve answers the benchmark's commands until "stop".
func (c *exchangeCluster) serve(in *bufio.Scanner, out *json.Encoder) {
	in.Buffer(make([]byte, 1<<20), 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	var exchanges sync.WaitGroup
	defer func() { cancel(); exchanges.Wait() }()
	stopLoad := func() {}
	defer func() { stopLoad() }()
	for in.Scan() {
		var cmd workerCommand
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			_ = out.Encode(workerReply{Err: err.Error()})
			return
		}
		switch cmd.Cmd {
		case "peers":
			c.setPeers(cmd.Peers)
			c.warm()
			if c.cfg.Busy {
				stopLoad = c.drive(c.cfg.Rate)
			}
		case "profile":
			if c.cfg.Profile != "" {
				stopProfile := c.profile()
				defer stopProfile()
			}
		case "start":
			// The feeds publish from now on; each node watches its
			// peers once told to ("watch"): hundreds of nodes on two
			// cores cannot do every TLS handshake of the mesh at once.
			for _, nd := range c.nodes {
				exchanges.Go(func() { nd.feed.Run(ctx) })
			}
		case "watch":
			for _, nd := range c.nodes {
				if nd.id == cmd.Node {
					exchanges.Go(func() { watchLoad(ctx, c.deps(nd)) })
				}
			}
		case "stop":
			return
		}
		_ = out.Encode(c.sample())
	}
}

// profile writes a CPU profile until the returned func is called.
func (c *exchangeCluster) profile() (stop func()) {
	f, err := os.Create(fmt.Sprintf("%s.%d", c.cfg.Profile, c.cfg.First))
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		c.tb.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// exchangeCluster is one worker's nodes.
type exchangeCluster struct {
	tb    testing.TB
	cfg   workerConfig
	nodes []*exchangeNode
}

// exchangeNode is one node: its API server over a metered TLS listener,
// its router over a backend that holds each request a while, and a peer
// client that meters its connections.
type exchangeNode struct {
	id     string
	addr   string
	router *router.Router
	feed   *load.Feed
	api    *api.Server
	hc     *http.Client
	meter  *byteMeter
	peers  []load.Peer
}

func startExchangeCluster(tb testing.TB, cfg workerConfig) *exchangeCluster {
	ca := loadBenchCA(tb, cfg.CADir)
	c := &exchangeCluster{tb: tb, cfg: cfg}
	for i := range cfg.Count {
		c.nodes = append(c.nodes, startExchangeNode(tb, ca, cfg, exchangeNodeID(cfg.First+i)))
	}
	return c
}

// exchangeNodeID names the benchmark's node i.
func exchangeNodeID(i int) string { return fmt.Sprintf("n%03d", i) }

func startExchangeNode(tb testing.TB, ca *pki.CA, cfg workerConfig, id string) *exchangeNode {
	keys := benchKeyring(tb, ca, id)
	nd := &exchangeNode{id: id, meter: &byteMeter{}}
	nd.router = router.New(id, holdBackend{}, nil, nil).WithConfig(router.Config{Slots: 4, ServeUndeployed: true})
	nd.feed = load.NewFeed(load.FeedConfig{Build: loadSource{router: nd.router}.build, FrameBudget: cfg.FrameBudget})
	nd.api = api.New(api.Config{PeerID: keys.ConnPeerID, MaxHeaderBytes: 8 << 10, LoadFeed: nd.feed}, nd.router, nil, zap.NewNop())
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	nd.addr = raw.Addr().String()
	ln := tls.NewListener(meteredListener{Listener: raw, m: nd.meter}, listenerConfig{keys: keys}.tlsConfig())
	go func() { _ = nd.api.Serve(ln) }()

	t := ollama.NewTransport()
	t.TLSClientConfig = keys.ClientConfig(cluster.ServerName)
	// A feed holds its connection for good; without keep-alives, a dial
	// that outlived its cancelled request (the mesh's start-up on two
	// cores) closes rather than idling past the worker's end.
	t.DisableKeepAlives = true
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

// setPeers gives every measured node the others as its peers, and every
// other node the measured ones.
func (c *exchangeCluster) setPeers(addrs map[string]string) {
	measured := func(id string) bool { return id < exchangeNodeID(c.cfg.Measured) }
	for _, nd := range c.nodes {
		for id, addr := range addrs {
			if id != nd.id && (measured(nd.id) || measured(id)) {
				nd.peers = append(nd.peers, load.Peer{ID: id, Addr: addr})
			}
		}
	}
}

// deps are what runLoadExchange needs of nd.
func (c *exchangeCluster) deps(nd *exchangeNode) loadDeps {
	log := zap.NewNop()
	if c.cfg.Log {
		log = zap.Must(zap.NewDevelopment()).Named(nd.id)
	}
	return loadDeps{hc: nd.hc, scheme: "https", router: nd.router, feed: nd.feed, peers: func() []load.Peer { return nd.peers },
		interval: load.DefaultInterval, log: log}
}

// exchangeModels are the models the benchmark's nodes serve.
var exchangeModels = []string{"m0:latest", "m1:latest"}

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
		fmt.Fprintln(os.Stderr, "exchange worker:", err)
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

// sample is the worker's totals now.
func (c *exchangeCluster) sample() workerReply {
	r := workerReply{CPU: processCPU().Seconds(), Watching: map[string]int{}, Peers: map[string]int{}}
	for _, nd := range c.nodes {
		r.Peers[nd.id] = len(nd.peers)
		r.Sent += nd.meter.sent.Load()
		r.Recv += nd.meter.recv.Load()
		v := nd.router.View()
		for _, p := range nd.peers {
			r.Pairs++
			if v.Health(p.ID) == load.Fresh {
				r.Fresh++
				r.Watching[nd.id]++
			}
		}
	}
	return r
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

// loadBenchCA reads the CA the benchmark wrote.
func loadBenchCA(tb testing.TB, dir string) *pki.CA {
	certPEM, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

// benchKeyring holds id's cluster certificate, issued by ca.
func benchKeyring(tb testing.TB, ca *pki.CA, id string) *pki.Keyring {
	key, err := pki.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, err := ca.Issue(id, key.Public(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	creds, err := pki.FromPEM(id, ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	keys := &pki.Keyring{}
	keys.Set(creds)
	return keys
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
