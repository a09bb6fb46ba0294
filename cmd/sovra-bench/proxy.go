package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sovra/sovra/internal/bench"
	"github.com/sovra/sovra/node/auth"
)

// Names of the processes and targets.
const (
	procSim      = "sim"
	procSovra    = "sovra"
	procBaseline = "baseline"

	targetDirect   = "direct"
	targetBaseline = "baseline"
	targetNative   = "sovra /api/chat"
	targetOpenAI   = "sovra /v1"
)

// benchModels are the models the simulator is given: one answers at once,
// for the non-streamed load, the other paces its tokens, for the streams.
const (
	unaryModel  = "bench-unary:latest"
	streamModel = "bench-stream:latest"
)

// proxyFlags are the settings of `sovra-bench proxy`.
type proxyFlags struct {
	rates          []float64
	clients        int
	duration       time.Duration
	maxRequests    int
	streamRate     float64
	streamDuration time.Duration
	tokens         int
	unaryTokens    int
	tokenRate      float64
	rounds         int
	warmup         time.Duration
	timeout        time.Duration
	json           bool
	strict         bool
	keep           bool
	sovraBin       string
	simBin         string
	profile        string
	targets        bench.Targets
}

func parseProxyFlags(args []string) (*proxyFlags, error) {
	f := &proxyFlags{}
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	rates := fs.String("rates", "50,200,500", "comma-separated request rates (per second) of the non-streamed phases")
	fs.IntVar(&f.clients, "clients", 16, "clients of the closed-loop phases, streamed and not, each sending its next request when the last ended (0 skips them)")
	fs.DurationVar(&f.duration, "duration", 3*time.Second, "length of each non-streamed phase")
	fs.IntVar(&f.maxRequests, "max-requests", 5000, "most requests of any one phase")
	fs.Float64Var(&f.streamRate, "stream-rate", 25, "streams started per second in the streamed phases (0 skips them)")
	fs.DurationVar(&f.streamDuration, "stream-duration", 6*time.Second, "length of each streamed phase")
	fs.IntVar(&f.tokens, "tokens", 200, "tokens of each streamed answer")
	fs.IntVar(&f.unaryTokens, "unary-tokens", 200, "tokens of each non-streamed answer")
	fs.Float64Var(&f.tokenRate, "token-rate", 1000, "tokens per second within one stream (0: no pacing)")
	fs.IntVar(&f.rounds, "rounds", 3, "rounds each phase is split into, the targets taking turns round by round, so that a drift of the machine's speed (another process, the CPU's clock) falls on all of them alike rather than on one")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "warm-up load before measuring, spread over the targets")
	fs.StringVar(&f.profile, "profile", "", "write a CPU profile and the allocations of sovra for each of its phases to this directory (sovra runs with --debug-addr on loopback)")
	fs.DurationVar(&f.timeout, "timeout", 15*time.Second, "limit for one request or stream")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON instead of tables")
	fs.BoolVar(&f.strict, "strict", false, "exit with status 3 when a target is missed")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory with binaries and process logs")
	fs.StringVar(&f.sovraBin, "sovra-bin", "", "use this sovra binary instead of building ./cmd/sovra")
	fs.StringVar(&f.simBin, "sim-bin", "", "use this ollama-sim binary instead of building ./cmd/ollama-sim")
	fs.Float64Var(&f.targets.CPURatio, "cpu-ratio", 2, "target: sovra's CPU per request at most this times the baseline's")
	fs.Float64Var(&f.targets.EventRatio, "event-ratio", 1.5, "target: sovra's CPU per streamed event at most this times the baseline's")
	fs.DurationVar(&f.targets.AddedP99, "added-p99", 2*time.Millisecond, "target: p99 latency sovra adds at --p99-rate")
	fs.Float64Var(&f.targets.P99Rate, "p99-rate", 200, "the rate at which --added-p99 is checked")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("proxy: unexpected arguments %q", fs.Args())}
	}
	for _, s := range strings.Split(*rates, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			return nil, usageError{fmt.Errorf("--rates: %q is not a positive number", s)}
		}
		f.rates = append(f.rates, r)
	}
	switch {
	case len(f.rates) == 0 && f.streamRate <= 0 && f.clients <= 0:
		return nil, usageError{errors.New("nothing to measure: give --rates, --stream-rate or --clients")}
	case f.duration <= 0 || f.streamDuration <= 0 || f.timeout <= 0:
		return nil, usageError{errors.New("--duration, --stream-duration and --timeout must be positive")}
	case f.tokens < 1 || f.unaryTokens < 1:
		return nil, usageError{errors.New("--tokens and --unary-tokens must be at least 1")}
	case f.tokenRate < 0 || f.warmup < 0 || f.maxRequests < 0 || f.clients < 0:
		return nil, usageError{errors.New("--token-rate, --warmup, --max-requests and --clients must not be negative")}
	case f.rounds < 1:
		return nil, usageError{errors.New("--rounds must be at least 1")}
	}
	return f, nil
}

// rig is the set of processes under test.
type rig struct {
	dir      string
	children map[string]*child
	simAddr  string
	sovra    string
	baseline string
	// token is the management token sovra made in its data directory
	// (empty for a binary too old to need one).
	token string
	// debug is sovra's profiler address and profiles where its CPU
	// profiles go (both empty without --profile).
	debug, profiles string
}

func runProxyBench(ctx context.Context, args []string) error {
	f, err := parseProxyFlags(args)
	if err != nil {
		return err
	}
	r, err := setUp(ctx, f)
	if r != nil {
		defer r.tearDown(f.keep)
	}
	if err != nil {
		return err
	}
	rep, err := measure(ctx, f, r)
	if err != nil {
		return err
	}
	rep.Evaluate(f.targets)
	return printReport(rep, f.json, f.strict, func() { r.tearDown(f.keep) })
}

// setUp builds the binaries and starts the simulator, sovra and the
// baseline proxy. The returned rig, even with an error, must be torn down.
func setUp(ctx context.Context, f *proxyFlags) (*rig, error) {
	dir, err := os.MkdirTemp("", "sovra-bench-")
	if err != nil {
		return nil, err
	}
	r := &rig{dir: dir, children: map[string]*child{}}
	self, err := os.Executable()
	if err != nil {
		return r, err
	}
	if f.simBin == "" || f.sovraBin == "" {
		root, err := moduleRoot()
		if err != nil {
			return r, err
		}
		progress("building ollama-sim and sovra in %s", dir)
		if f.simBin == "" {
			if f.simBin, err = build(ctx, root, "./cmd/ollama-sim", dir); err != nil {
				return r, err
			}
		}
		if f.sovraBin == "" {
			if f.sovraBin, err = build(ctx, root, "./cmd/sovra", dir); err != nil {
				return r, err
			}
		}
	}

	if r.simAddr, err = freeAddr(); err != nil {
		return r, err
	}
	sim, err := start(procSim, f.simBin, simArgs(r.simAddr), dir)
	if err != nil {
		return r, err
	}
	r.children[procSim] = sim
	if err := sim.waitReady(ctx, "http://"+r.simAddr+"/api/version", 20*time.Second); err != nil {
		return r, err
	}
	if err := addSimModels(r.simAddr, f); err != nil {
		return r, err
	}

	if r.sovra, err = freeAddr(); err != nil {
		return r, err
	}
	sovraArgs := []string{
		"serve", "--node-id", "bench", "--http-addr", r.sovra,
		"--ollama", "http://" + r.simAddr, "--log-level", "warn",
		"--data-dir", dir + "/sovra-data",
		// A lone node has no deployments: it serves the simulator's models.
		"--serve-undeployed",
		// As many slots and queue places as the simulator has.
		"--slots", "1024", "--queue-max", "8192",
	}
	if f.profile != "" {
		if r.debug, err = freeAddr(); err != nil {
			return r, err
		}
		if err := os.MkdirAll(f.profile, 0o755); err != nil {
			return r, err
		}
		r.profiles = f.profile
		sovraArgs = append(sovraArgs, "--debug-addr", r.debug)
	}
	sv, err := start(procSovra, f.sovraBin, sovraArgs, dir)
	if err != nil {
		return r, err
	}
	r.children[procSovra] = sv
	if err := sv.waitReady(ctx, "http://"+r.sovra+"/readyz", 30*time.Second); err != nil {
		return r, err
	}
	if r.token, err = madeToken(filepath.Join(dir, "sovra-data", "admin-token")); err != nil {
		return r, err
	}

	if r.baseline, err = freeAddr(); err != nil {
		return r, err
	}
	bp, err := start(procBaseline, self, []string{"baseline-proxy", "--listen", r.baseline, "--target", r.simAddr}, dir)
	if err != nil {
		return r, err
	}
	r.children[procBaseline] = bp
	if err := bp.waitReady(ctx, "http://"+r.baseline+"/api/version", 20*time.Second); err != nil {
		return r, err
	}
	return r, nil
}

// simArgs are the simulator's flags: a loopback address, no time to first
// token, no prompt or load time, no pacing, and room for every request the
// load sends. The two models used are added afterwards through the control
// API, each with its answer length and pace.
func simArgs(addr string) []string {
	return []string{
		"--addr", addr, "--ttft", "0s", "--prompt-token-cost", "0s", "--load", "0s",
		"--tokens-per-second", "0", "--parallel", "1024", "--max-queue", "8192",
	}
}

// addSimModels gives the simulator the two benchmark models.
func addSimModels(simAddr string, f *proxyFlags) error {
	models := []map[string]any{
		{"name": unaryModel, "response_tokens": f.unaryTokens, "parallel": 1024, "max_queue": 8192},
		{"name": streamModel, "response_tokens": f.tokens, "tokens_per_second": f.tokenRate, "parallel": 1024, "max_queue": 8192},
	}
	for _, m := range models {
		b, _ := json.Marshal(m)
		resp, err := http.Post("http://"+simAddr+"/_sim/models", "application/json", bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("add model to the simulator: %w", err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("add model to the simulator: %s: %s", resp.Status, body)
		}
	}
	return nil
}

func (r *rig) tearDown(keep bool) {
	for _, name := range []string{procBaseline, procSovra, procSim} {
		if c := r.children[name]; c != nil {
			c.stop()
		}
	}
	r.children = map[string]*child{}
	if keep {
		progress("kept %s", r.dir)
		return
	}
	_ = os.RemoveAll(r.dir)
}

// chatBody is the request body of the chat load for model. Ollama's
// /api/chat and OpenAI's /v1/chat/completions read this body alike.
func chatBody(model string, stream bool) []byte {
	b, _ := json.Marshal(map[string]any{
		"model": model,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a concise assistant."},
			{"role": "user", "content": "Explain in a few sentences what a reverse proxy does and why one would put it in front of an inference server."},
		},
		"stream": stream,
	})
	return b
}

// targets returns the four ways of sending the load, in measuring order,
// with the process that answers each.
func (r *rig) targets(stream bool, timeout time.Duration) ([]bench.Target, []string) {
	model := unaryModel
	if stream {
		model = streamModel
	}
	native, sse := bench.Unary, bench.Unary
	nativeExpect, openaiExpect := []byte(`"done":true`), []byte(`"choices"`)
	if stream {
		native, sse = bench.NDJSON, bench.SSE
		nativeExpect, openaiExpect = nil, nil
	}
	body := chatBody(model, stream)
	mk := func(name, addr, path string, body []byte, kind bench.Kind, expect []byte) bench.Target {
		return bench.Target{
			Name: name, Client: bench.NewClient(addr, stream, timeout),
			URL: "http://" + addr + path, Body: body, Kind: kind, Expect: expect,
		}
	}
	ts := []bench.Target{
		mk(targetDirect, r.simAddr, "/api/chat", body, native, nativeExpect),
		mk(targetBaseline, r.baseline, "/api/chat", body, native, nativeExpect),
		mk(targetNative, r.sovra, "/api/chat", body, native, nativeExpect),
		mk(targetOpenAI, r.sovra, "/v1/chat/completions", body, sse, openaiExpect),
	}
	ts[2].Token, ts[3].Token = r.token, r.token
	return ts, []string{procSim, procBaseline, procSovra, procSovra}
}

// madeToken reads the management token a sovra node made at path; a
// binary that makes none (older than the management token) gives "".
func madeToken(path string) (string, error) {
	tok, _, err := auth.ReadTokenFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return tok, err
}

// measure runs the warm-up and every phase.
func measure(ctx context.Context, f *proxyFlags, r *rig) (*bench.Report, error) {
	rep := &bench.Report{
		Direct: procSim, Baseline: procBaseline, Sovra: procSovra,
		Settings: map[string]string{
			"rates":           fmt.Sprint(f.rates),
			"duration":        f.duration.String(),
			"stream_rate":     fmt.Sprint(f.streamRate),
			"clients":         strconv.Itoa(f.clients),
			"stream_duration": f.streamDuration.String(),
			"tokens":          strconv.Itoa(f.tokens),
			"unary_tokens":    strconv.Itoa(f.unaryTokens),
			"token_rate":      fmt.Sprint(f.tokenRate),
			"rounds":          strconv.Itoa(f.rounds),
			"cpus":            strconv.Itoa(runtime.NumCPU()),
			"go":              runtime.Version(),
		},
	}
	if l1, text, err := bench.LoadAverage(); err == nil {
		rep.Settings["loadavg_start"] = strings.ReplaceAll(text, " ", "/")
		if l1 > float64(runtime.NumCPU())/2 {
			progress("warning: load average %s on %d CPUs before the run: other work competes for the CPUs, and latency figures will show it", text, runtime.NumCPU())
		}
	}
	defer func() {
		if _, text, err := bench.LoadAverage(); err == nil {
			rep.Settings["loadavg_end"] = strings.ReplaceAll(text, " ", "/")
		}
	}()
	unary, unaryProcs := r.targets(false, f.timeout)
	streams, streamProcs := r.targets(true, f.timeout)

	if f.warmup > 0 {
		progress("warming up for %s", f.warmup)
		all := append(append([]bench.Target{}, unary...), streams...)
		each := f.warmup / time.Duration(len(all))
		for i, t := range all {
			rate := 100.0
			if i >= len(unary) {
				rate = 10
			}
			res := bench.Run(ctx, t, bench.Load{Rate: rate, Duration: each})
			if res.Errors > 0 {
				return nil, fmt.Errorf("warm-up of %s failed: %d of %d requests: %s", t.Name, res.Errors, res.Sent, res.FirstError)
			}
		}
	}

	var loads []struct {
		stream bool
		load   bench.Load
	}
	add := func(stream bool, l bench.Load) {
		loads = append(loads, struct {
			stream bool
			load   bench.Load
		}{stream, l})
	}
	for _, rate := range f.rates {
		add(false, bench.Load{Rate: rate, Duration: f.duration, MaxRequests: f.maxRequests})
	}
	if f.clients > 0 {
		add(false, bench.Load{Clients: f.clients, Duration: f.duration, MaxRequests: f.maxRequests})
	}
	if f.streamRate > 0 {
		add(true, bench.Load{Rate: f.streamRate, Duration: f.streamDuration, MaxRequests: f.maxRequests})
	}
	if f.clients > 0 {
		add(true, bench.Load{Clients: f.clients, Duration: f.streamDuration, MaxRequests: f.maxRequests})
	}
	for _, l := range loads {
		ts, procs := unary, unaryProcs
		if l.stream {
			ts, procs = streams, streamProcs
		}
		phases := make([]*bench.Phase, len(ts))
		for round := range f.rounds {
			part := l.load.Split(f.rounds, round)
			for i, t := range ts {
				p, err := r.phase(ctx, t, procs[i], l.stream, part)
				if err != nil {
					return nil, err
				}
				if phases[i] == nil {
					phases[i] = p
				} else {
					phases[i].Add(p)
				}
			}
		}
		rep.Phases = append(rep.Phases, phases...)
	}
	return rep, ctx.Err()
}

// phase measures one target under one load, with the CPU time of every
// process and, for streams, the messages the simulator sent.
func (r *rig) phase(ctx context.Context, t bench.Target, server string, stream bool, load bench.Load) (*bench.Phase, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.simControl(http.MethodPost, "/_sim/reset", nil); err != nil {
		return nil, err
	}
	// Let the reset and the end of the previous phase settle.
	time.Sleep(200 * time.Millisecond)
	progress("%-16s %-6s %10s for %s", t.Name, kindLabel(stream), load.Label(), load.Duration)
	before, err := r.cpu()
	if err != nil {
		return nil, err
	}
	prof := r.profilePhase(t.Name, stream, load)
	res := bench.Run(ctx, t, load)
	if err := prof(); err != nil {
		progress("  profile: %v", err)
	}
	after, err := r.cpu()
	if err != nil {
		return nil, err
	}
	p := &bench.Phase{Stream: stream, Rate: load.Rate, Clients: load.Clients, Server: server, Result: res, CPU: map[string]time.Duration{}}
	for name, a := range after {
		p.CPU[name] = bench.CPUUsed(before[name], a)
	}
	if stream {
		var recs []struct {
			Endpoint string `json:"endpoint"`
			Stream   bool   `json:"stream"`
			Chunks   int    `json:"chunks"`
		}
		if err := r.simControl(http.MethodGet, "/_sim/requests", &recs); err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if rec.Stream && rec.Endpoint == "/api/chat" {
				p.SimEvents += rec.Chunks
			}
		}
	}
	if res.Errors > 0 {
		progress("  %d of %d requests failed, first: %s", res.Errors, res.Sent, res.FirstError)
	}
	return p, nil
}

// profilePhase starts a CPU profile of sovra lasting the phase when the
// target is sovra and --profile is set; the func it returns waits for it
// and writes it.
func (r *rig) profilePhase(target string, stream bool, load bench.Load) func() error {
	if r.debug == "" || !strings.HasPrefix(target, "sovra") {
		return func() error { return nil }
	}
	secs := max(1, int(load.Duration.Seconds()))
	base := fmt.Sprintf("%s-%s-%s", strings.NewReplacer(" ", "", "/", "_").Replace(target), kindLabel(stream), strings.NewReplacer(" ", "", "/", "per").Replace(load.Label()))
	// The CPU profile and the allocations made during the phase (a delta
	// of the allocation profile), side by side.
	kinds := map[string]string{"profile": base + ".pprof", "allocs": base + ".allocs.pprof"}
	done := make(chan error, len(kinds))
	for kind, name := range kinds {
		go func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", r.debug, kind, secs))
			if err != nil {
				done <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				err = os.WriteFile(filepath.Join(r.profiles, name), b, 0o644)
			}
			done <- err
		}()
	}
	return func() error { return errors.Join(<-done, <-done) }
}

func kindLabel(stream bool) string {
	if stream {
		return "stream"
	}
	return "unary"
}

// cpu reads the CPU time used so far by every child.
func (r *rig) cpu() (map[string]bench.CPUSample, error) {
	out := make(map[string]bench.CPUSample, len(r.children))
	for name, c := range r.children {
		if c.exited() {
			return nil, fmt.Errorf("%s exited during the benchmark (%v):\n%s", name, c.err, c.tail())
		}
		d, err := bench.ReadCPU(c.pid())
		if err != nil {
			return nil, fmt.Errorf("cpu time of %s: %w", name, err)
		}
		out[name] = d
	}
	return out, nil
}

// simControl calls the simulator's control API, decoding the answer into
// out when it is not nil.
func (r *rig) simControl(method, path string, out any) error {
	req, err := http.NewRequest(method, "http://"+r.simAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("simulator %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// progress reports what the benchmark is doing, on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sovra-bench: "+format+"\n", args...)
}
