package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testbin"
	"github.com/sovra/sovra/internal/testwait"
)

// token is the management token of the suite's nodes.
const token = "chaos-management-token-0123456789"

// proc is one sovra process and its simulated Ollama.
type proc struct {
	id             string
	http, raft     string
	debug          string // the profiler's address (loopback)
	dir            string
	sim            *ollamasim.Server
	mu             sync.Mutex
	cmd            *exec.Cmd
	exited         chan struct{}
	logMu          sync.Mutex
	logs           *bytes.Buffer
	killedAt       []time.Time
	restartedCount int
	bin            string // the binary it runs; empty: the fleet's
}

// fleet is the cluster of processes.
type fleet struct {
	t      testing.TB
	bin    string
	secret string // path of the cluster-token file
	admin  string // path of the admin-token file
	ids    []string
	extra  []string // more flags for every node
	procs  map[string]*proc
	// serving are the nodes clients use: running, and seen healthy since
	// they last started (as a load balancer would by /readyz).
	smu     sync.Mutex
	serving map[string]bool
	// parts cuts nodes off from each other; nil where this machine
	// cannot (noParts says why).
	parts   *partitioner
	noParts string
}

// freeAddr returns a loopback address that is free now, for a node
// process to bind later. Its port is taken below the kernel's range of
// ephemeral ports: a port from ":0" is from that range, and an outgoing
// connection of any test running beside this one may take it before the
// node binds it (seen in CI: "bind: address already in use").
func freeAddr(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 200 {
		port := minPort + rand.IntN(low-minPort)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// minPort is the lowest port freeAddr hands out.
const minPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default where it cannot be read).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var hi int
		if n, _ := fmt.Sscan(string(b), &low, &hi); n != 2 {
			low = 32768
		}
	}
	return max(low, minPort+1000)
}

// startFleet starts n nodes that form a cluster together.
func startFleet(t testing.TB, n int) *fleet {
	t.Helper()
	return startFleetWith(t, n, fleetOptions{})
}

// fleetOptions change how startFleetWith starts the nodes.
type fleetOptions struct {
	// bins are the binaries some nodes run, by id (others run the suite's
	// build), for mixed versions.
	bins map[string]string
	// prepare, when set, is called with each node's data directory
	// before the node first starts (to mount a file system there).
	prepare func(id, dir string)
	// args are more flags for every node.
	args []string
}

// startFleetWith is startFleet with options.
func startFleetWith(t testing.TB, n int, opts fleetOptions) *fleet {
	t.Helper()
	dir := t.TempDir()
	f := &fleet{t: t, bin: testbin.Sovra(t), procs: map[string]*proc{}, serving: map[string]bool{}, extra: opts.args,
		secret: filepath.Join(dir, "cluster-token"), admin: filepath.Join(dir, "admin-token")}
	if err := os.WriteFile(f.secret, []byte("chaos-cluster-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.admin, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f.parts, f.noParts = newPartitioner(); f.parts != nil {
		t.Cleanup(f.parts.close) // after the processes are killed
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		f.ids = append(f.ids, id)
		sim := ollamasim.StartTest(t, ollamasim.Config{Name: id, TTFT: 30 * time.Millisecond, TokensPerSecond: 200, ResponseTokens: 24, Parallel: 4})
		f.setProc(&proc{id: id, http: freeAddr(t), raft: freeAddr(t), debug: freeAddr(t), dir: filepath.Join(dir, id), sim: sim, logs: &bytes.Buffer{}, bin: opts.bins[id]})
		if opts.prepare != nil {
			opts.prepare(id, filepath.Join(dir, id))
		}
	}
	for _, id := range f.ids {
		f.start(id)
	}
	t.Cleanup(func() {
		for _, id := range f.ids {
			f.kill(id)
		}
	})
	return f
}

// proc is a node's process; procs may be added while clients run.
func (f *fleet) proc(id string) *proc {
	f.smu.Lock()
	defer f.smu.Unlock()
	return f.procs[id]
}

// count is how many nodes were ever started.
func (f *fleet) count() int {
	f.smu.Lock()
	defer f.smu.Unlock()
	return len(f.procs)
}

func (f *fleet) setProc(p *proc) {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.procs[p.id] = p
}

// args are a node's flags: every start the same, so a restart keeps its
// place.
func (f *fleet) args(p *proc) []string {
	var join []string
	for _, id := range f.ids {
		if id != p.id {
			join = append(join, f.proc(id).http)
		}
	}
	form := []string{"--bootstrap-expect", fmt.Sprint(len(f.ids)), "--join", strings.Join(join, ",")}
	switch {
	case !containsID(f.ids, p.id):
		form = []string{"--join", strings.Join(join, ",")} // a node added later joins the cluster there is
	case len(f.ids) == 1:
		form = []string{"--bootstrap"}
	}
	return append(append([]string{"serve", "--node-id", p.id, "--http-addr", p.http, "--raft-addr", p.raft, "--debug-addr", p.debug},
		append(form, "--cluster-token-file", f.secret, "--admin-token-file", f.admin, "--data-dir", p.dir,
			"--ollama", p.sim.URL(), "--gpu", "1xA100:80GiB", "--slots", "4",
			"--heartbeat-interval", "200ms", "--down-after", "2s", "--down-grace", "3s",
			"--shutdown-grace", "2s", "--log-format", "json", "--log-level", "warn")...), f.extra...)
}

// addNode starts one more node that joins the cluster; it is not one of
// f.ids (the nodes the health checks expect).
func (f *fleet) addNode(id string) {
	f.t.Helper()
	sim := ollamasim.StartTest(f.t, ollamasim.Config{Name: id, TTFT: 30 * time.Millisecond, TokensPerSecond: 200, ResponseTokens: 24, Parallel: 4})
	f.setProc(&proc{id: id, http: freeAddr(f.t), raft: freeAddr(f.t), debug: freeAddr(f.t), dir: filepath.Join(f.t.TempDir(), id), sim: sim, logs: &bytes.Buffer{}})
	f.start(id)
	f.t.Cleanup(func() { f.kill(id) })
}

func (f *fleet) start(id string) {
	p := f.proc(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	bin := f.bin
	if p.bin != "" {
		bin = p.bin
	}
	cmd := exec.Command(bin, f.args(p)...)
	cmd.Stdout, cmd.Stderr = &lockedWriter{buf: p.logs, mu: &p.logMu}, &lockedWriter{buf: p.logs, mu: &p.logMu}
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start %s: %v", id, err)
	}
	if f.parts != nil {
		if err := f.parts.place(id, cmd.Process.Pid); err != nil {
			f.t.Fatalf("cgroup of %s: %v", id, err)
		}
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(p.exited)
}

// lockedWriter lets the process write its logs while the test reads them.
type lockedWriter struct {
	buf *bytes.Buffer
	mu  *sync.Mutex
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

// kill sends SIGKILL and waits for the process to end.
func (f *fleet) kill(id string) time.Time {
	p := f.proc(id)
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return time.Now()
	}
	f.smu.Lock()
	f.serving[id] = false
	f.smu.Unlock()
	at := time.Now()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	p.mu.Lock()
	p.cmd = nil
	p.killedAt = append(p.killedAt, at)
	p.mu.Unlock()
	return at
}

func (f *fleet) restart(id string) {
	p := f.proc(id)
	p.mu.Lock()
	p.restartedCount++
	p.mu.Unlock()
	f.start(id)
}

func (f *fleet) url(id string) string { return "http://" + f.proc(id).http }

func (f *fleet) client(id string) *client.Client {
	return client.New(f.url(id), client.WithToken(token), client.WithTimeout(5*time.Second),
		client.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
}

// alive lists the nodes whose process runs.
func (f *fleet) alive() []string {
	var out []string
	for _, id := range f.ids {
		p := f.proc(id)
		p.mu.Lock()
		if p.cmd != nil {
			out = append(out, id)
		}
		p.mu.Unlock()
	}
	return out
}

// inService lists the nodes clients may use.
func (f *fleet) inService() []string {
	f.smu.Lock()
	defer f.smu.Unlock()
	var out []string
	for _, id := range f.ids {
		if f.serving[id] {
			out = append(out, id)
		}
	}
	return out
}

// leader is the leader a running node reports ("" when none does).
func (f *fleet) leader(among []string) string {
	for _, id := range among {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := f.client(id).ClusterStatus(ctx)
		cancel()
		if err == nil && st.Leader != "" && containsID(among, st.Leader) {
			return st.Leader
		}
	}
	return ""
}

func containsID(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// waitNodes waits until every node is a ready member under one leader.
func (f *fleet) waitNodes(timeout time.Duration) {
	f.t.Helper()
	testwait.For(f.t, timeout, "every node a ready member", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := f.client(f.ids[0]).ClusterStatus(ctx)
		if err != nil || st.Leader == "" || len(st.Members) != len(f.ids) {
			return false
		}
		for _, m := range st.Members {
			if m.Status != client.NodeReady {
				return false
			}
		}
		return true
	})
}

// waitHealthy waits until every node runs, answers, is a ready voter of
// one leader, and the deployment has all its replicas ready.
func (f *fleet) waitHealthy(timeout time.Duration, deployment string, replicas int) {
	f.t.Helper()
	var last string
	testwait.Until(f.t, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, id := range f.ids {
			st, err := f.client(id).ClusterStatus(ctx)
			if err != nil || st.Leader == "" || len(st.Members) != len(f.ids) {
				last = fmt.Sprintf("%s: %v %+v", id, err, st)
				return false
			}
			for _, m := range st.Members {
				if m.Status != client.NodeReady {
					last = fmt.Sprintf("%s sees %s %s", id, m.ID, m.Status)
					return false
				}
			}
		}
		d, err := f.client(f.ids[0]).Deployment(ctx, deployment)
		if err != nil || d.ReadyReplicas != replicas {
			last = fmt.Sprintf("deployment: %v %+v", err, d)
			return false
		}
		for _, id := range f.ids {
			if err := readyz(ctx, f.url(id)); err != nil {
				last = id + ": " + err.Error()
				return false
			}
		}
		return true
	}, func() string { return "a healthy cluster; last " + last })
	f.smu.Lock()
	for _, id := range f.ids {
		f.serving[id] = true
	}
	f.smu.Unlock()
}

// dumpLogs writes the nodes' logs to the test log when it failed.
func (f *fleet) dumpLogs() {
	if !f.t.Failed() {
		return
	}
	for _, id := range f.ids {
		p := f.proc(id)
		p.logMu.Lock()
		logs := p.logs.String()
		p.logMu.Unlock()
		if len(logs) > 20000 {
			logs = logs[len(logs)-20000:]
		}
		f.t.Logf("logs of %s:\n%s", id, logs)
	}
}

// stateOf is what node id holds of the replicated state, read locally.
func (f *fleet) stateOf(id string) (string, uint64, error) {
	ctx, cancel := context.WithTimeout(client.Stale(context.Background()), 5*time.Second)
	defer cancel()
	c := f.client(id)
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return "", 0, err
	}
	deps, err := c.Deployments(ctx)
	if err != nil {
		return "", 0, err
	}
	keys, err := c.Keys(ctx)
	if err != nil {
		return "", 0, err
	}
	type replica struct{ Node, State string }
	type dep struct {
		Name, Model       string
		Replicas          int
		Version, Modified uint64
		Placements        []replica
	}
	var ds []dep
	for _, d := range deps {
		x := dep{Name: d.Name, Model: d.Model, Replicas: d.Replicas, Version: d.Version, Modified: d.ModifiedIndex}
		for _, p := range d.Placements {
			x.Placements = append(x.Placements, replica{p.Node, p.State})
		}
		ds = append(ds, x)
	}
	for i := range keys {
		keys[i].LastUsed = 0 // reported by the nodes as requests come
	}
	b, err := json.Marshal(struct {
		D []dep
		K []client.Key
	}{ds, keys})
	return string(b), st.AppliedIndex, err
}

// readyz asks a node whether it is ready to serve.
func readyz(ctx context.Context, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d", resp.StatusCode)
	}
	return nil
}

// killedDuring reports whether the request's entry node was killed (or
// frozen) while it ran, or was killed just before it was sent.
func (f *fleet) killedDuring(r request) bool {
	p := f.proc(r.entry)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.killedAt {
		if !k.Before(r.start.Add(-time.Second)) && !k.After(r.end) {
			return true
		}
	}
	return false
}
