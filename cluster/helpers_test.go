package cluster

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/faultnet"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/testwait"
)

var logLevel = flag.String("cluster.log", "", "log cluster and raft at this level (debug, info, warn)")

func TestMain(m *testing.M) {
	// raft never resolves a future still queued for its main loop or its
	// state machine when it shuts down, so a waitFuture whose caller gave
	// up before Close keeps a goroutine parked on it. Raft's own goroutines
	// are still checked: a cluster left running fails here.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/sovra/sovra/cluster.waitFuture.func1"))
}

// fastTimings are raft timings for tests on loopback under -race.
func fastTimings() RaftTimings {
	return RaftTimings{
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
}

type testOpts struct {
	n         int
	expect    bool // bootstrap-expect instead of bootstrap + join
	maxVoters int
	timings   *RaftTimings // nil: fastTimings
	heartbeat time.Duration
	downAfter time.Duration
	// creds, when set, gives a node the operator's certificates instead
	// of the cluster CA that the first node makes.
	creds func(id string) *pki.Creds
	token func(id string) string
	// transport wraps a node's peer HTTP transport (faults above TCP).
	transport func(id string, rt http.RoundTripper) http.RoundTripper
	// sched configures the leader's scheduler.
	sched SchedulingConfig
}

// tnode is one node of a test cluster: a Cluster, its HTTP server and its
// Run loop, restartable on the same addresses and data directory.
type tnode struct {
	id       string
	cfg      Config
	wrap     func(id string, rt http.RoundTripper) http.RoundTripper
	creds    func(id string) *pki.Creds
	httpLn   net.Listener // the listener of the next start
	c        *Cluster
	srv      *http.Server
	client   *http.Client
	cancel   context.CancelFunc
	done     chan struct{}
	serveErr chan error
}

type tcluster struct {
	t     testing.TB
	net   *faultnet.Net
	nodes []*tnode
	log   *zap.Logger
}

// newCluster starts opts.n nodes and waits until all are registered and
// ready on every node.
func newCluster(t testing.TB, opts testOpts) *tcluster {
	tc := &tcluster{t: t, net: faultnet.New(), log: testLogger(t)}
	for i := range opts.n {
		tc.nodes = append(tc.nodes, tc.newNode(fmt.Sprintf("n%d", i+1), opts))
	}
	var all []string
	for _, n := range tc.nodes {
		all = append(all, n.cfg.HTTPAddr)
	}
	for i, n := range tc.nodes {
		switch {
		case opts.expect:
			n.cfg.BootstrapExpect, n.cfg.Join = opts.n, all
		case i == 0:
			n.cfg.Bootstrap = true
		default:
			n.cfg.Join = all[:1]
		}
	}
	t.Cleanup(tc.stopAll)
	for _, n := range tc.nodes {
		tc.start(n)
	}
	tc.waitRegistered(tc.nodes...)
	return tc
}

func testLogger(t testing.TB) *zap.Logger {
	if *logLevel == "" {
		return zap.NewNop()
	}
	lvl, err := zapcore.ParseLevel(*logLevel)
	if err != nil {
		t.Fatal(err)
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

func (tc *tcluster) newNode(id string, opts testOpts) *tnode {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tc.t.Fatal(err)
	}
	timings := fastTimings()
	if opts.timings != nil {
		timings = *opts.timings
	}
	cfg := Config{
		NodeID: id, HTTPAddr: ln.Addr().String(), RaftAddr: "127.0.0.1:0",
		DataDir: filepath.Join(tc.t.TempDir(), id), Token: "secret", MaxVoters: opts.maxVoters,
		HeartbeatInterval: or(opts.heartbeat, 50*time.Millisecond), DownAfter: or(opts.downAfter, time.Second),
		Raft: timings, Node: state.Node{Labels: map[string]string{"zone": id}, Version: "test"},
		Scheduling: opts.sched, Logger: tc.log.Named(id),
	}
	if opts.token != nil {
		cfg.Token = opts.token(id)
	}
	return &tnode{id: id, cfg: cfg, httpLn: ln, wrap: opts.transport, creds: opts.creds}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// start opens the node's cluster, serves its handler and runs it.
func (tc *tcluster) start(n *tnode) {
	tc.t.Helper()
	cfg := n.cfg
	cfg.StreamLayer = tc.net.StreamLayer(n.id)
	cfg.Keyring = &pki.Keyring{}
	if n.creds != nil {
		cfg.Keyring.Set(n.creds(n.id))
	}
	cfg.Dial = tc.net.DialContext(n.id)
	var rt http.RoundTripper = &http.Transport{DialContext: cfg.Dial, TLSClientConfig: cfg.Keyring.ClientConfig(ServerName)}
	if n.wrap != nil {
		rt = n.wrap(n.id, rt)
	}
	n.client = &http.Client{Transport: rt}
	cfg.HTTPClient = n.client
	c, err := Open(cfg)
	if err != nil {
		tc.t.Fatalf("open %s: %v", n.id, err)
	}
	n.c = c
	n.cfg.RaftAddr = c.RaftAddr() // restarts keep the address
	tc.net.Register(n.id, n.cfg.RaftAddr, n.cfg.HTTPAddr)
	if n.httpLn == nil {
		if n.httpLn, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			tc.t.Fatalf("listen %s: %v", n.id, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.srv = &http.Server{Handler: c.Handler(), BaseContext: func(net.Listener) context.Context { return ctx }}
	ln := n.httpLn
	n.httpLn = nil
	n.serveErr = make(chan error, 1)
	n.srv.TLSConfig = cfg.Keyring.ServerConfig(nil)
	go func() { n.serveErr <- n.srv.ServeTLS(ln, "", "") }()
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		c.Run(ctx)
	}()
}

// stop stops a node as a crash would, as far as the others can tell; its
// data stays for a restart.
func (tc *tcluster) stop(n *tnode) {
	if n.c == nil {
		return
	}
	n.cancel()
	<-n.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		tc.t.Errorf("shutdown http of %s: %v", n.id, err)
	}
	if err := <-n.serveErr; !errors.Is(err, http.ErrServerClosed) {
		tc.t.Errorf("serve %s: %v", n.id, err)
	}
	if err := n.c.Close(); err != nil {
		tc.t.Logf("close %s: %v", n.id, err)
	}
	n.client.CloseIdleConnections()
	n.c = nil
}

func (tc *tcluster) restart(n *tnode) {
	tc.stop(n)
	tc.start(n)
}

func (tc *tcluster) stopAll() {
	for _, n := range tc.nodes {
		tc.stop(n)
	}
}

func (tc *tcluster) running() []*tnode {
	var out []*tnode
	for _, n := range tc.nodes {
		if n.c != nil {
			out = append(out, n)
		}
	}
	return out
}

func (tc *tcluster) node(id string) *tnode {
	for _, n := range tc.nodes {
		if n.id == id {
			return n
		}
	}
	tc.t.Fatalf("no node %s", id)
	return nil
}

// leader waits until the running nodes agree on a running leader.
func (tc *tcluster) leader() *tnode {
	tc.t.Helper()
	var l *tnode
	testwait.For(tc.t, 15*time.Second, "an agreed leader", func() bool {
		l = nil
		var id raft.ServerID
		for i, n := range tc.running() {
			_, lid := n.c.raft.LeaderWithID()
			if lid == "" || (i > 0 && lid != id) {
				return false
			}
			id = lid
		}
		for _, n := range tc.running() {
			if n.id == string(id) && n.c.IsLeader() {
				l = n
			}
		}
		return l != nil
	})
	return l
}

// followers are the running nodes other than the leader.
func (tc *tcluster) followers() []*tnode {
	l := tc.leader()
	var out []*tnode
	for _, n := range tc.running() {
		if n != l {
			out = append(out, n)
		}
	}
	return out
}

// waitRegistered waits until every running node's state lists the given
// nodes as ready.
func (tc *tcluster) waitRegistered(nodes ...*tnode) {
	tc.t.Helper()
	tc.waitStatus(state.NodeReady, nodes...)
}

func (tc *tcluster) waitStatus(st state.NodeStatus, nodes ...*tnode) {
	tc.t.Helper()
	testwait.For(tc.t, 20*time.Second, fmt.Sprintf("nodes %s on every node", st), func() bool {
		for _, r := range tc.running() {
			ok := true
			r.c.Machine().Read(func(s *state.State) {
				for _, n := range nodes {
					if got, found := s.Nodes[n.id]; !found || got.Status != st {
						ok = false
					}
				}
			})
			if !ok {
				return false
			}
		}
		return true
	})
}

// voters returns the leader's configuration: voter and non-voter ids.
func (tc *tcluster) voters() (voters, nonvoters []string) {
	tc.t.Helper()
	conf, err := tc.leader().c.configuration()
	if err != nil {
		tc.t.Fatal(err)
	}
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			nonvoters = append(nonvoters, string(s.ID))
		}
	}
	return voters, nonvoters
}

func (tc *tcluster) waitVoters(nv, nn int) {
	tc.t.Helper()
	testwait.For(tc.t, 20*time.Second, fmt.Sprintf("%d voters and %d non-voters", nv, nn), func() bool {
		v, n := tc.voters()
		return len(v) == nv && len(n) == nn
	})
}

// waitConverged waits until every running node holds the same encoded
// state, and returns it.
func (tc *tcluster) waitConverged() []byte {
	tc.t.Helper()
	var want []byte
	testwait.For(tc.t, 20*time.Second, "identical state machines", func() bool {
		want = nil
		for _, n := range tc.running() {
			var buf bytes.Buffer
			if err := n.c.Machine().Snapshot().Encode(&buf); err != nil {
				tc.t.Fatal(err)
			}
			if want != nil && !bytes.Equal(want, buf.Bytes()) {
				return false
			}
			want = buf.Bytes()
		}
		return true
	})
	return want
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func putCmd(name string, replicas int, key string) state.Command {
	return state.Command{Type: state.TypePutDeployment, Key: key, Body: state.PutDeployment{
		Deployment: state.Deployment{Name: name, Model: "qwen3:0.6b", Replicas: replicas},
	}}
}

var putSeq atomic.Uint64

// put writes a deployment through n and fails the test on error. The
// write carries an idempotency key, so a leader change mid-write is
// retried rather than reported.
func (tc *tcluster) put(n *tnode, name string, replicas int) state.Outcome {
	tc.t.Helper()
	key := fmt.Sprintf("put-%d", putSeq.Add(1))
	out, err := n.c.Apply(ctxFor(tc.t, 10*time.Second), putCmd(name, replicas, key))
	if err != nil {
		tc.t.Fatalf("put %s via %s: %v", name, n.id, err)
	}
	return out
}

// replicasOf reads a deployment linearizably through n (-1: absent).
func (tc *tcluster) replicasOf(n *tnode, name string) int {
	tc.t.Helper()
	got := -1
	err := n.c.Read(ctxFor(tc.t, 10*time.Second), false, func(s *state.State) {
		if d, ok := s.Deployments[name]; ok {
			got = d.Replicas
		}
	})
	if err != nil {
		tc.t.Fatalf("read %s via %s: %v", name, n.id, err)
	}
	return got
}
