//go:build linux

package node

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/node/router/load"
)

// BenchmarkLoadExchange measures what the load exchange costs one node.
// It runs N nodes, each with its real API server (Fiber over TLS, the
// peer check of the internal routes), its real router and the real
// exchange code (runLoadExchange), peers on loopback under mutual TLS
// with cluster certificates. The nodes live in worker processes of at
// most -exchange.per-process nodes each (a full mesh of 200 nodes holds
// 80,000 sockets, past one process's file limit here); this process only
// steers them. Past -exchange.measured nodes (20), only that many are
// measured, each with every other node as its peer, while the others
// exchange only with them, paced as in the full cluster (see
// startExchangeWorkers): a full mesh of 200 costs more than two cores.
// It reports per measured node:
//
//   - cpu%/node: the workers' CPU time with the exchange running, less
//     that of the same nodes and load without it, per node, in percent
//     of one core (base-cpu%/node is the latter);
//   - sentB/s/node, recvB/s/node: bytes per second on the wire (TLS
//     records included, TCP/IP headers not);
//   - fresh: the share of (node, peer) pairs whose view of the peer was
//     Fresh, sampled through the window (below 1: the design does not
//     keep up).
//
// "idle" nodes serve nothing (each served one request per model before,
// so that its report lists them); "busy" ones each start -exchange.rate
// requests a second, on one of two models, each holding a slot 0.5-1.5 s,
// so that their running counts, averages and published prefixes keep
// changing.
//
//	go test -run '^$' -bench LoadExchange -benchtime 1x ./node/
//	go test -run '^$' -bench 'LoadExchange/^nodes=200$/' -benchtime 1x ./node/ -args -exchange.window=10s
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
	exchangeWindow     = flag.Duration("exchange.window", 5*time.Second, "measuring window of each BenchmarkLoadExchange point")
	exchangeRate       = flag.Float64("exchange.rate", 4, "requests a second each busy node starts in BenchmarkLoadExchange")
	exchangeProfile    = flag.String("exchange.cpuprofile", "", "have each worker write a CPU profile of the exchange to this path, suffixed with its first node's number")
	exchangeStartLimit = flag.Duration("exchange.start-limit", 5*time.Second, "time each node may take, on average, to see its peers once it starts watching them")
	exchangeLog        = flag.Bool("exchange.log", false, "log the exchange's warnings (to standard error)")
	exchangeMeasured   = flag.Int("exchange.measured", 20, "above this many nodes, measure only this many, each with every other node as a peer; the others exchange only with them (0: measure all)")
	exchangePerProcess = flag.Int("exchange.per-process", 40, "most nodes one BenchmarkLoadExchange worker process runs")
)

func benchExchange(b *testing.B, n int, busy bool) {
	ws := startExchangeWorkers(b, n, busy)
	defer ws.stop()
	base := ws.measure(*exchangeWindow)
	ws.all(workerCommand{Cmd: "start"})
	// A design that cannot keep up never gets every view fresh: measure
	// it all the same (fresh says how far it got).
	if !ws.bringUp(time.Duration(n) * *exchangeStartLimit) {
		b.Logf("%.0f%% of the %d nodes' views of their peers were fresh", 100*ws.fresh(), n)
	}
	time.Sleep(2 * time.Second) // let the connections' start-up end
	ws.all(workerCommand{Cmd: "profile"})
	got := ws.measure(*exchangeWindow)

	perNode := func(v float64, w window) float64 { return v / float64(ws.m) / w.wall.Seconds() }
	b.ReportMetric(100*perNode(max(got.cpu-base.cpu*got.wall.Seconds()/base.wall.Seconds(), 0), got), "cpu%/node")
	b.ReportMetric(100*perNode(base.cpu, base), "base-cpu%/node")
	b.ReportMetric(perNode(float64(got.sent)-float64(base.sent)*got.wall.Seconds()/base.wall.Seconds(), got), "sentB/s/node")
	b.ReportMetric(perNode(float64(got.recv)-float64(base.recv)*got.wall.Seconds()/base.wall.Seconds(), got), "recvB/s/node")
	b.ReportMetric(got.fresh, "fresh")
}

// workerCommand is what the benchmark tells a worker, one JSON line on
// its standard input.
type workerCommand struct {
	// Cmd: "peers" (Peers holds every node's address), "sample",
	// "start" (the feeds), "watch" (Node watches its peers' feeds),
	// "profile" (from now on, when configured) or "stop".
	Cmd   string            `json:"cmd"`
	Peers map[string]string `json:"peers,omitempty"`
	// Node is the node that is to watch its peers ("watch").
	Node string `json:"node,omitempty"`
}

// workerReply is a worker's answer, one JSON line on its standard output.
type workerReply struct {
	// Addrs are the worker's nodes' addresses (its first line).
	Addrs map[string]string `json:"addrs,omitempty"`
	// CPU (seconds), Sent and Recv (bytes) are totals since the worker
	// started; Fresh of Pairs (node, peer) pairs are Fresh now.
	CPU   float64 `json:"cpu"`
	Sent  int64   `json:"sent"`
	Recv  int64   `json:"recv"`
	Fresh int     `json:"fresh"`
	Pairs int     `json:"pairs"`
	// Watching counts, by node, the peers it sees Fresh, of Peers.
	Watching map[string]int `json:"watching,omitempty"`
	Peers    map[string]int `json:"peers,omitempty"`
	Err      string         `json:"err,omitempty"`
}

// exchangeWorkers are the worker processes of one benchmark point.
type exchangeWorkers struct {
	tb       testing.TB
	procs    []*workerProc
	measured []*workerProc          // the workers of the measured nodes
	owner    map[string]*workerProc // the worker of each node
	ids      []string
	m        int // nodes measured
}

type workerProc struct {
	cmd *exec.Cmd
	in  *json.Encoder
	out *bufio.Scanner
}

// startExchangeWorkers starts workers for n nodes, tells them every
// node's address and waits until they have warmed up.
//
// Past -exchange.measured nodes, a mesh of n nodes on two cores costs
// more than the machine has, so only the first m nodes, in worker
// processes of their own, are measured: each has all n-1 others as
// peers, as in the real cluster. The others stand for the rest of the
// cluster: they exchange with the measured nodes only, and their feeds
// are paced as if all n-1 peers watched them, so that each measured node
// takes in and sends what it would in a cluster of n.
func startExchangeWorkers(tb testing.TB, n int, busy bool) *exchangeWorkers {
	caDir := writeBenchCA(tb)
	m := *exchangeMeasured
	if m <= 0 || m >= n {
		m = n
	}
	ws := &exchangeWorkers{tb: tb, owner: map[string]*workerProc{}, m: m}
	per := max(*exchangePerProcess, 1)
	addrs := map[string]string{}
	spawn := func(first, count int, measured bool) {
		cfg := workerConfig{CADir: caDir, First: first, Count: count, Busy: busy, Rate: *exchangeRate,
			Log: *exchangeLog, Measured: m}
		if measured {
			cfg.Profile = *exchangeProfile
		} else {
			// Paced as if n-1 peers watched, though m do.
			cfg.FrameBudget = load.DefaultFrameBudget * float64(m) / float64(n-1)
		}
		p := ws.spawn(cfg)
		if measured {
			ws.measured = append(ws.measured, p)
		}
		r := p.reply()
		maps.Copy(addrs, r.Addrs)
		for id := range r.Addrs {
			ws.owner[id] = p
			ws.ids = append(ws.ids, id)
		}
	}
	for first := 0; first < m; first += per {
		spawn(first, min(per, m-first), true)
	}
	for first := m; first < n; first += per {
		spawn(first, min(per, n-first), false)
	}
	ws.all(workerCommand{Cmd: "peers", Peers: addrs})
	return ws
}

func (ws *exchangeWorkers) spawn(cfg workerConfig) *workerProc {
	raw, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadExchangeWorker$", "-test.count=1")
	cmd.Env = append(os.Environ(), workerEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		ws.tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		ws.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		ws.tb.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	p := &workerProc{cmd: cmd, in: json.NewEncoder(in), out: sc}
	ws.procs = append(ws.procs, p)
	return p
}

// reply reads the worker's next answer, skipping the test runner's lines.
func (p *workerProc) reply() workerReply {
	for p.out.Scan() {
		line := p.out.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r workerReply
		if err := json.Unmarshal(line, &r); err != nil {
			panic(fmt.Sprintf("worker reply %q: %v", line, err))
		}
		if r.Err != "" {
			panic("worker: " + r.Err)
		}
		return r
	}
	panic(fmt.Sprintf("worker ended: %v", p.out.Err()))
}

// all sends cmd to every worker and returns their answers.
func (ws *exchangeWorkers) all(cmd workerCommand) []workerReply {
	for _, p := range ws.procs {
		if err := p.in.Encode(cmd); err != nil {
			ws.tb.Fatal(err)
		}
	}
	out := make([]workerReply, len(ws.procs))
	for i, p := range ws.procs {
		out[i] = p.reply()
	}
	return out
}

// sample is the measured workers' totals now.
func (ws *exchangeWorkers) sample() workerReply {
	return ws.sum(ws.all(workerCommand{Cmd: "sample"}), ws.measured)
}

// sum adds up the replies of the workers in of.
func (ws *exchangeWorkers) sum(replies []workerReply, of []*workerProc) (sum workerReply) {
	sum.Watching, sum.Peers = map[string]int{}, map[string]int{}
	for i, r := range replies {
		maps.Copy(sum.Watching, r.Watching)
		maps.Copy(sum.Peers, r.Peers)
		if !slices.Contains(of, ws.procs[i]) {
			continue
		}
		sum.CPU += r.CPU
		sum.Sent += r.Sent
		sum.Recv += r.Recv
		sum.Fresh += r.Fresh
		sum.Pairs += r.Pairs
	}
	return sum
}

// bringUp has the nodes start watching their peers a few at a time, each
// once fewer than four are still opening their feeds, and reports
// whether every view got fresh within limit.
func (ws *exchangeWorkers) bringUp(limit time.Duration) bool {
	const opening = 4
	end := time.Now().Add(limit)
	slices.Sort(ws.ids)
	started := 0
	for time.Now().Before(end) {
		s := ws.sum(ws.all(workerCommand{Cmd: "sample"}), ws.procs)
		waiting := 0
		for _, id := range ws.ids[:started] {
			if s.Watching[id] < s.Peers[id] {
				waiting++
			}
		}
		if waiting == 0 && started == len(ws.ids) {
			return true
		}
		for ; waiting < opening && started < len(ws.ids); started, waiting = started+1, waiting+1 {
			p := ws.owner[ws.ids[started]]
			if err := p.in.Encode(workerCommand{Cmd: "watch", Node: ws.ids[started]}); err != nil {
				ws.tb.Fatal(err)
			}
			p.reply()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func (ws *exchangeWorkers) fresh() float64 {
	s := ws.sample()
	return float64(s.Fresh) / float64(max(s.Pairs, 1))
}

func (ws *exchangeWorkers) waitFresh(limit time.Duration) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if ws.fresh() == 1 {
			return true
		}
	}
	return false
}

// window is what one measuring window saw.
type window struct {
	wall       time.Duration
	cpu        float64 // seconds
	sent, recv int64
	fresh      float64
}

// measure samples the workers over d.
func (ws *exchangeWorkers) measure(d time.Duration) window {
	start, s0 := time.Now(), ws.sample()
	var fresh float64
	const samples = 5
	for range samples {
		time.Sleep(d / samples)
		fresh += ws.fresh() / samples
	}
	s1 := ws.sample()
	return window{wall: time.Since(start), cpu: s1.CPU - s0.CPU, sent: s1.Sent - s0.Sent, recv: s1.Recv - s0.Recv, fresh: fresh}
}

func (ws *exchangeWorkers) stop() {
	for _, p := range ws.procs {
		_ = p.in.Encode(workerCommand{Cmd: "stop"})
	}
	for _, p := range ws.procs {
		if err := p.cmd.Wait(); err != nil {
			ws.tb.Errorf("worker: %v", err)
		}
	}
}

// writeBenchCA writes a new cluster CA for the workers to issue their
// nodes' certificates with.
func writeBenchCA(tb testing.TB) string {
	ca, err := pki.NewCA("sovra benchmark CA")
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	for name, data := range map[string][]byte{pki.CAFile: ca.CertPEM(), pki.CAKeyFile: keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
