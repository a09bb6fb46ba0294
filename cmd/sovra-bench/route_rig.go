package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sovra/sovra/client"
)

// sovraFeatures are the routing flags the sovra binary under test knows,
// read from `sovra serve --help`.
type sovraFeatures struct {
	RoutingPolicy bool `json:"routing_policy"`
	Slots         bool `json:"slots"`
	QueueMax      bool `json:"queue_max"`
	QueueTimeout  bool `json:"queue_timeout"`
	LoadInterval  bool `json:"load_interval"`
	// TokenFiles: the binary takes --admin-token-file and
	// --cluster-token-file, and wants the management token on every
	// call; older ones take the cluster token on admin calls.
	TokenFiles bool `json:"token_files"`
}

// parseFeatures reads the flags of `sovra serve --help`.
func parseFeatures(help string) sovraFeatures {
	has := func(flag string) bool {
		for _, line := range strings.Split(help, "\n") {
			if f := strings.Fields(line); len(f) > 0 && (f[0] == flag || strings.HasPrefix(f[0], flag+"=")) {
				return true
			}
		}
		return false
	}
	return sovraFeatures{
		RoutingPolicy: has("--routing-policy"), Slots: has("--slots"), QueueMax: has("--queue-max"),
		QueueTimeout: has("--queue-timeout"), LoadInterval: has("--load-interval"), TokenFiles: has("--admin-token-file"),
	}
}

// routeRig is the set of processes: one simulator per node, started once,
// and a sovra cluster over them, started anew for every policy.
type routeRig struct {
	f        *routeFlags
	setup    routeSetup
	dir      string
	sovraBin string
	features sovraFeatures
	token    string
	// adminToken is what admin and inference calls send as bearer token:
	// the management token, or the cluster token for older binaries.
	adminToken string

	sims     []*child
	simAddrs []string

	nodes []*child // the running cluster, by node
	runs  int      // clusters started, for fresh data directories
	salts int      // points started, for prompts unique to each

	// admin is the client of the admin and simulator control calls.
	admin *http.Client
}

// newRouteRig builds the binaries and starts the simulators. The returned
// rig, even with an error, must be torn down.
func newRouteRig(ctx context.Context, f *routeFlags, setup routeSetup) (*routeRig, error) {
	dir, err := os.MkdirTemp("", "sovra-bench-route-")
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	r := &routeRig{f: f, setup: setup, dir: dir, sovraBin: f.sovraBin, token: hex.EncodeToString(tok),
		admin: &http.Client{Timeout: 10 * time.Second}}
	simBin := f.simBin
	if simBin == "" || r.sovraBin == "" {
		root, err := moduleRoot()
		if err != nil {
			return r, err
		}
		progress("building ollama-sim and sovra in %s", dir)
		if simBin == "" {
			if simBin, err = build(ctx, root, "./cmd/ollama-sim", dir); err != nil {
				return r, err
			}
		}
		if r.sovraBin == "" {
			if r.sovraBin, err = build(ctx, root, "./cmd/sovra", dir); err != nil {
				return r, err
			}
		}
	}
	help, err := exec.CommandContext(ctx, r.sovraBin, "serve", "--help").CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("%s serve --help: %w\n%s", r.sovraBin, err, help)
	}
	r.features = parseFeatures(string(help))
	if err := r.writeTokens(); err != nil {
		return r, err
	}
	if !r.features.RoutingPolicy {
		progress("this sovra has no --routing-policy: only round-robin (its current local-first routing behind round-robin entry) and the oracle can run")
	}
	for _, n := range setup.Nodes {
		addr, err := freeAddr()
		if err != nil {
			return r, err
		}
		c, err := start("sim-"+n.ID, simBin, n.simArgs(addr, setup.AnswerTokens), dir)
		if err != nil {
			return r, err
		}
		r.sims = append(r.sims, c)
		r.simAddrs = append(r.simAddrs, addr)
	}
	for i, c := range r.sims {
		if err := c.waitReady(ctx, "http://"+r.simAddrs[i]+"/api/version", 20*time.Second); err != nil {
			return r, err
		}
	}
	return r, nil
}

// writeTokens settles the tokens: with TokenFiles a management token apart
// from the cluster token, both written to files in the rig's directory.
func (r *routeRig) writeTokens() error {
	r.adminToken = r.token
	if !r.features.TokenFiles {
		return nil
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	r.adminToken = hex.EncodeToString(tok)
	for name, v := range map[string]string{"admin-token": r.adminToken, "cluster-token": r.token} {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(v+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// tokenArgs are the flags that hand a node its secrets.
func (r *routeRig) tokenArgs() []string {
	if !r.features.TokenFiles {
		return []string{"--cluster-token", r.token}
	}
	return []string{"--cluster-token-file", filepath.Join(r.dir, "cluster-token"), "--admin-token-file", filepath.Join(r.dir, "admin-token")}
}

// tearDown stops every process and removes the directory unless keep.
func (r *routeRig) tearDown(keep bool) {
	r.stopCluster()
	stopAll(r.sims)
	r.sims = nil
	if keep {
		progress("kept %s", r.dir)
		return
	}
	_ = os.RemoveAll(r.dir)
}

// sovraArgs are the flags of node i of a cluster running policy.
func (r *routeRig) sovraArgs(i int, httpAddr, raftAddr, join, dataDir, policy string) []string {
	n := r.setup.Nodes[i]
	args := []string{
		"serve", "--node-id", n.ID, "--http-addr", httpAddr, "--raft-addr", raftAddr,
		"--gpu", "1xA100:80GiB", "--label", "bench-speed=" + strconv.FormatFloat(n.Speed, 'g', -1, 64),
		"--ollama", "http://" + r.simAddrs[i], "--data-dir", dataDir,
		"--log-level", "warn", "--shutdown-grace", "2s",
	}
	args = append(args, r.tokenArgs()...)
	if join == "" {
		args = append(args, "--bootstrap")
	} else {
		args = append(args, "--join", join)
	}
	ft := r.features
	if ft.RoutingPolicy {
		args = append(args, "--routing-policy", policy)
	}
	if ft.Slots {
		args = append(args, "--slots", strconv.Itoa(n.Slots))
	}
	if ft.LoadInterval && r.f.loadInterval > 0 {
		args = append(args, "--load-interval", r.f.loadInterval.String())
	}
	if ft.QueueMax && r.f.queueMax > 0 {
		args = append(args, "--queue-max", strconv.Itoa(r.f.queueMax))
	}
	if ft.QueueTimeout && r.f.queueTimeout > 0 {
		args = append(args, "--queue-timeout", r.f.queueTimeout.String())
	}
	return append(args, r.f.sovraExtra...)
}

// startCluster starts one sovra node beside each simulator, forms a
// cluster, deploys the chat model with one replica per node and waits
// until every replica is ready. It returns the nodes' API addresses.
func (r *routeRig) startCluster(ctx context.Context, policy string) ([]entry, error) {
	r.stopCluster()
	r.runs++
	began := time.Now()
	progress("%-17s starting a %d-node sovra cluster", policy, len(r.setup.Nodes))
	var entries []entry
	var join string
	for i, n := range r.setup.Nodes {
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		raftAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("sovra-%s-%d-%s", n.ID, r.runs, policy)
		dataDir := filepath.Join(r.dir, name)
		c, err := start(name, r.sovraBin, r.sovraArgs(i, httpAddr, raftAddr, join, dataDir, policy), r.dir)
		if err != nil {
			return nil, err
		}
		r.nodes = append(r.nodes, c)
		if join == "" {
			join = httpAddr
		}
		entries = append(entries, entry{name: n.ID, addr: httpAddr, model: deployment})
	}
	for i, e := range entries {
		if err := r.nodes[i].waitReady(ctx, "http://"+e.addr+"/readyz", 30*time.Second); err != nil {
			return nil, err
		}
	}
	if err := r.waitMembers(ctx, entries[0].addr); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{"name": deployment, "model": simModel, "replicas": len(r.setup.Nodes)})
	if st, raw, err := r.adminCall(ctx, http.MethodPost, entries[0].addr, "/admin/v1/deployments", body, nil); err != nil {
		return nil, err
	} else if st != http.StatusCreated {
		return nil, fmt.Errorf("create deployment: status %d: %s", st, raw)
	}
	if err := r.waitPlaced(ctx, entries[0].addr); err != nil {
		return nil, err
	}
	progress("%-17s cluster ready in %s", policy, time.Since(began).Round(10*time.Millisecond))
	return entries, nil
}

// stopCluster stops every sovra node.
func (r *routeRig) stopCluster() {
	stopAll(r.nodes)
	r.nodes = nil
}

// stopAll asks every child to end at once, then waits for each, killing
// those that have not ended within a few seconds.
func stopAll(cs []*child) {
	for _, c := range cs {
		if !c.exited() {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range cs {
		select {
		case <-c.done:
		case <-time.After(time.Until(deadline)):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

// checkAlive fails when a process has exited.
func (r *routeRig) checkAlive() error {
	for _, c := range append(append([]*child{}, r.sims...), r.nodes...) {
		if c.exited() {
			return fmt.Errorf("%s exited during the benchmark (%v):\n%s", c.name, c.err, c.tail())
		}
	}
	return nil
}

// adminCall sends an admin request with the admin token and decodes a
// JSON answer into out when it is not nil.
func (r *routeRig) adminCall(ctx context.Context, method, addr, path string, body []byte, out any) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.admin.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, raw, err
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, raw, nil
}

// poll calls check every 100ms until it reports done, fails, a process
// exits or within has passed.
func (r *routeRig) poll(ctx context.Context, what string, within time.Duration, check func() (bool, string, error)) error {
	deadline := time.Now().Add(within)
	last := ""
	for {
		done, state, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if state != "" {
			last = state
		}
		if err := r.checkAlive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %s; last: %s", what, within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitMembers waits until every node is a ready member.
func (r *routeRig) waitMembers(ctx context.Context, addr string) error {
	return r.poll(ctx, "cluster membership", 60*time.Second, func() (bool, string, error) {
		var v struct {
			Nodes []client.Node `json:"nodes"`
		}
		st, raw, err := r.adminCall(ctx, http.MethodGet, addr, "/admin/v1/nodes", nil, &v)
		if err != nil || st != http.StatusOK {
			return false, fmt.Sprintf("status %d %v %s", st, err, truncateText(raw)), ctx.Err()
		}
		ready := 0
		for _, n := range v.Nodes {
			if n.Status == client.NodeReady {
				ready++
			}
		}
		return ready == len(r.setup.Nodes), truncateText(raw), nil
	})
}

// waitPlaced waits until the deployment has one ready replica on every
// node and the scheduler has nothing left to do.
func (r *routeRig) waitPlaced(ctx context.Context, addr string) error {
	return r.poll(ctx, "deployment "+deployment, 90*time.Second, func() (bool, string, error) {
		var d client.Deployment
		st, raw, err := r.adminCall(ctx, http.MethodGet, addr, "/admin/v1/deployments/"+deployment, nil, &d)
		if err != nil || st != http.StatusOK {
			return false, fmt.Sprintf("status %d %v %s", st, err, truncateText(raw)), ctx.Err()
		}
		nodes := map[string]bool{}
		for _, p := range d.Placements {
			if p.State == client.PlacementReady {
				nodes[p.Node] = true
			}
		}
		n := len(r.setup.Nodes)
		return d.Settled && d.ReadyReplicas == n && len(nodes) == n, truncateText(raw), nil
	})
}

// simRecord is the part of the simulator's request log the benchmark
// reads.
type simRecord struct {
	Endpoint     string        `json:"endpoint"`
	Model        string        `json:"model"`
	Stream       bool          `json:"stream"`
	Outcome      string        `json:"outcome"`
	PromptTokens int           `json:"prompt_tokens"`
	CachedTokens int           `json:"cached_tokens"`
	FirstChunk   time.Duration `json:"first_chunk"`
	DoneReason   string        `json:"done_reason"`
	Start        time.Time     `json:"start"`
	End          time.Time     `json:"end"`
}

// simRecords reads the chat requests simulator i logged since its last
// reset.
func (r *routeRig) simRecords(ctx context.Context, i int) ([]simRecord, error) {
	var recs []simRecord
	if err := r.simCall(ctx, i, http.MethodGet, "/_sim/requests", &recs); err != nil {
		return nil, err
	}
	out := recs[:0]
	for _, rec := range recs {
		// A chat without messages only loads or unloads the model.
		if rec.Endpoint == chatPath && rec.Model == simModel && rec.DoneReason != "load" && rec.DoneReason != "unload" {
			out = append(out, rec)
		}
	}
	return out, nil
}

// waitIdle waits until no simulator has a chat request in flight, then
// empties their logs.
func (r *routeRig) waitIdle(ctx context.Context) error {
	err := r.poll(ctx, "simulators idle", r.f.timeout+10*time.Second, func() (bool, string, error) {
		for i := range r.sims {
			var st struct {
				Models map[string]struct {
					InFlight int `json:"in_flight"`
				} `json:"models"`
			}
			if err := r.simCall(ctx, i, http.MethodGet, "/_sim/stats", &st); err != nil {
				return false, "", err
			}
			if n := st.Models[simModel].InFlight; n > 0 {
				return false, fmt.Sprintf("%s has %d in flight", r.setup.Nodes[i].ID, n), nil
			}
		}
		return true, "", nil
	})
	if err != nil {
		return err
	}
	for i := range r.sims {
		if err := r.simCall(ctx, i, http.MethodPost, "/_sim/reset", nil); err != nil {
			return err
		}
	}
	return nil
}

// simCall calls simulator i's control API.
func (r *routeRig) simCall(ctx context.Context, i int, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+r.simAddrs[i]+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.admin.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s %s: %w", r.setup.Nodes[i].ID, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("simulator %s %s %s: %s: %s", r.setup.Nodes[i].ID, method, path, resp.Status, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func truncateText(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
