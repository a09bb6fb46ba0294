package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/bench"
	"github.com/sovra/sovra/internal/testwait"
)

func TestWantsMatrix(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false}, {[]string{"--quick"}, false}, {[]string{"--quick", "--matrix"}, true},
		{[]string{"-matrix=true"}, true}, {[]string{"--", "--matrix"}, false},
	} {
		if got := wantsMatrix(tc.args); got != tc.want {
			t.Errorf("wantsMatrix(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestParseMatrixFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, m *matrixFlags)
	}{
		{"defaults: the whole matrix", []string{"--matrix"}, false, func(t *testing.T, m *matrixFlags) {
			if !slices.Equal(m.entries, allEntries) || !slices.Equal(m.requests, allRequests) || !slices.Equal(m.mixes, allMixes) ||
				!slices.Equal(m.backends, allBackends) || !slices.Equal(m.loads, []float64{50, 80, 95}) {
				t.Errorf("dimensions %v %v %v %v %v", m.entries, m.requests, m.mixes, m.backends, m.loads)
			}
			if !slices.Equal(m.policies, []string{policyOracle, policyLCProxy, policyLCEntry, policyTTF}) || m.slots != 1 || m.rounds != 2 {
				t.Errorf("policies %v slots %d rounds %d", m.policies, m.slots, m.rounds)
			}
			if !slices.Equal(m.speeds[backendsSkewed], []float64{1, 1, 2, 4}) || !slices.Equal(m.speeds[backendsEqual], []float64{2, 2, 2, 2}) {
				t.Errorf("speeds %v", m.speeds)
			}
			if m.targets != (matrixTargets{Load: 80, MeanVsOracle: 1.1, P99VsOracle: 1.3, VsLC: 1}) {
				t.Errorf("targets %+v", m.targets)
			}
		}},
		{"a subset", []string{"--matrix", "--entries", "one", "--requests", "unary", "--prompts", "same,multiturn", "--backends", "skewed", "--loads", "80",
			"--sovra-arg", "--affinity-factor 0", "--quick"}, false, func(t *testing.T, m *matrixFlags) {
			if !slices.Equal(m.entries, []string{entryOne}) || !slices.Equal(m.mixes, []string{mixSame, mixMultiTurn}) || !slices.Equal(m.loads, []float64{80}) {
				t.Errorf("subset %v %v %v", m.entries, m.mixes, m.loads)
			}
			if !slices.Equal(m.base.sovraExtra, []string{"--affinity-factor", "0"}) {
				t.Errorf("sovra args %q", m.base.sovraExtra)
			}
			if m.duration != 3*time.Second || m.rounds != 1 {
				t.Errorf("quick: duration %s rounds %d", m.duration, m.rounds)
			}
		}},
		{"unknown mix", []string{"--matrix", "--prompts", "random"}, true, nil},
		{"unknown policy", []string{"--matrix", "--policies", "oracle,nginx"}, true, nil},
		{"speed sets of different sizes", []string{"--matrix", "--equal-speeds", "1,1"}, true, nil},
		{"entry node out of range", []string{"--matrix", "--entry-node", "5"}, true, nil},
		{"no rounds", []string{"--matrix", "--rounds", "0"}, true, nil},
		{"empty dimension", []string{"--matrix", "--entries", ""}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMatrixFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if _, ok := err.(usageError); !ok {
					t.Errorf("error %v is not a usage error", err)
				}
				return
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

// matrixRunOf is a run whose latencies and TTFTs are the given
// milliseconds.
func matrixRunOf(policy, entry string, latMs ...int) *matrixRun {
	r := &matrixRun{Policy: policy, Entry: entry}
	for _, v := range latMs {
		d := time.Duration(v) * time.Millisecond
		r.samples = append(r.samples, bench.RouteSample{Node: "n1", Latency: d, TTFT: d / 2, Conv: -1})
	}
	r.Figures = bench.SummarizeRoute(r.samples)
	return r
}

func TestMatrixEvaluate(t *testing.T) {
	targets := matrixTargets{Load: 80, MeanVsOracle: 1.1, P99VsOracle: 1.3, VsLC: 1}
	for _, tc := range []struct {
		name   string
		sovra  []int
		lc     []int
		misses []string
	}{
		// The oracle: mean 100 ms, p99 200 ms.
		{"within every target", []int{60, 60, 200}, []int{100, 100, 300}, nil},
		{"mean above the oracle's bound", []int{130, 130, 200}, []int{200, 200, 300}, []string{"mean/oracle", "ttft-mean/oracle"}},
		{"worse than least-connections", []int{90, 90, 120}, []int{80, 80, 110}, []string{"mean/LC", "p99/LC", "ttft-mean/LC", "ttft-p99/LC"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &matrixCell{Backends: backendsSkewed, Request: reqStream, Prompts: mixUnique, Load: 80}
			c.Runs = []*matrixRun{matrixRunOf(policyOracle, "", 50, 50, 200), matrixRunOf(policyLCProxy, "", tc.lc...), matrixRunOf(policyTTF, entryOne, tc.sovra...)}
			rep := &matrixReport{Targets: targets, Cells: []*matrixCell{c}, lagLimit: time.Second}
			rep.evaluate()
			got := c.Runs[2]
			if !got.Checked || !slices.Equal(got.Misses, tc.misses) {
				t.Fatalf("misses %v, want %v (ratios %+v)", got.Misses, tc.misses, got.Ratios)
			}
			if c.Runs[0].Checked || c.Runs[1].Checked {
				t.Fatal("a baseline was held to the targets")
			}
			if rep.Passed() != (len(tc.misses) == 0) {
				t.Fatalf("passed %v", rep.Passed())
			}
		})
	}
	t.Run("other loads are not checked", func(t *testing.T) {
		c := &matrixCell{Request: reqUnary, Load: 50, Runs: []*matrixRun{matrixRunOf(policyOracle, "", 10), matrixRunOf(policyTTF, entryRR, 100)}}
		rep := &matrixReport{Targets: targets, Cells: []*matrixCell{c}, lagLimit: time.Second}
		rep.evaluate()
		if c.Runs[1].Checked || c.Runs[1].Ratios.Oracle.Mean != 10 || !rep.Passed() {
			t.Fatalf("run %+v", c.Runs[1])
		}
	})
}

func TestMatrixRunsPool(t *testing.T) {
	a, b := matrixRunOf(policyTTF, entryOne, 100, 100), matrixRunOf(policyTTF, entryOne, 400, 400)
	a.Misrouted, b.Misrouted = 0.1, 0.3
	a.Sim = matrixSim{Requests: map[string]int{"n1": 2}, FollowUps: 2, Hits: 1, Saved: 10 * time.Millisecond}
	b.Sim = matrixSim{Requests: map[string]int{"n1": 1, "n2": 1}, FollowUps: 2, Hits: 2, Saved: 30 * time.Millisecond}
	a.pool(b)
	if a.Figures.OK != 4 || a.Figures.Latency.Mean != 250*time.Millisecond || a.Misrouted != 0.2 {
		t.Fatalf("pooled figures %+v misrouted %.2f", a.Figures.Latency, a.Misrouted)
	}
	if a.Sim.Requests["n1"] != 3 || a.Sim.Hits != 3 || a.Sim.FollowUps != 4 || a.Sim.Saved != 20*time.Millisecond {
		t.Fatalf("pooled sim %+v", a.Sim)
	}
}

// TestPromptOfCountsLikeTheSimulator checks the oracle's view of a
// prompt: the simulator's tokens per message, and prefixes that chain.
func TestPromptOfCountsLikeTheSimulator(t *testing.T) {
	msgs := []chatMessage{{Role: "system", Content: words(10, "abcd", 0)}, {Role: "user", Content: words(5, "q", 0)}}
	p := promptOf(msgs)
	if !slices.Equal(p.Tokens, []int{messageOverhead + 10, 2*messageOverhead + 15}) {
		t.Fatalf("tokens %v", p.Tokens)
	}
	other := promptOf([]chatMessage{msgs[0], {Role: "user", Content: "else"}})
	if other.Hashes[0] != p.Hashes[0] || other.Hashes[1] == p.Hashes[1] {
		t.Fatal("prefixes do not chain")
	}
}

// TestRouteMatrixQuick runs the quick form of the matrix end to end on
// loopback: two simulators, a two-node sovra cluster, one cell, every
// policy and entry pattern. It checks that every request of every run
// succeeded, that each run's figures and ratios were computed and that
// the table shows them; no speed target is held here (those are the
// benchmark's, on a machine whose load is known).
func TestRouteMatrixQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sovra and ollama-sim and runs a cluster")
	}
	m, err := parseMatrixFlags([]string{"--matrix", "--quick", "--backends", "skewed", "--skewed-speeds", "1,2", "--equal-speeds", "1,1",
		"--requests", "unary", "--prompts", "shared", "--loads", "80", "--cell-duration", "2s", "--cell-warmup", "500ms",
		"--cluster-warmup", "1s", "--max-lag", "1s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := measureMatrix(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 1 {
		t.Fatalf("%d cells, want 1", len(rep.Cells))
	}
	c := rep.Cells[0]
	var names []string
	for _, r := range c.Runs {
		names = append(names, r.Policy+"/"+r.Entry)
		f := r.Figures
		if f.OK == 0 || f.Errors > 0 || f.OK != f.Sent {
			t.Errorf("%s %s: %d sent, %d ok, first error %q", r.Policy, r.Entry, f.Sent, f.OK, f.FirstError)
		}
		if r.Policy != policyOracle && (r.Ratios.Oracle.Mean == 0 || r.Ratios.Oracle.P99 == 0) {
			t.Errorf("%s %s: no ratio to the oracle", r.Policy, r.Entry)
		}
		if r.Sim.FollowUps == 0 || r.Sim.Hits > r.Sim.FollowUps {
			t.Errorf("%s %s: the simulators logged %d requests in the window, %d hits", r.Policy, r.Entry, r.Sim.FollowUps, r.Sim.Hits)
		}
	}
	if want := []string{"oracle/", "lc/", "lc-rr/", "ttf/one", "ttf/rr"}; !slices.Equal(names, want) {
		t.Fatalf("runs %v, want %v", names, want)
	}
	var out bytes.Buffer
	rep.WriteTable(&out)
	for _, want := range []string{"skewed backends (speeds 1:2), unary, shared prompts", "/o mean", "checked runs met every target"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	rows := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "80%" && slices.Contains(f, policyTTF) && (slices.Contains(f, entryOne) || slices.Contains(f, entryRR)) {
			rows++
		}
	}
	if rows != 2 {
		t.Errorf("table has %d rows of sovra's runs, want 2:\n%s", rows, out.String())
	}
	if testing.Verbose() {
		_, _ = os.Stdout.Write(out.Bytes())
	}
}

// TestSavedReportIsEvaluatedAgain checks --report: a report saved as JSON
// is read back and held to the targets given now.
func TestSavedReportIsEvaluatedAgain(t *testing.T) {
	c := &matrixCell{Backends: backendsSkewed, Request: reqUnary, Prompts: mixSame, Load: 80}
	c.Runs = []*matrixRun{matrixRunOf(policyOracle, "", 100, 100), matrixRunOf(policyTTF, entryOne, 120, 120)}
	b, err := json.Marshal(&matrixReport{Cells: []*matrixCell{c}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var saved matrixReport
	for _, tc := range []struct {
		mean string
		pass bool
	}{{"1.1", false}, {"1.25", true}} {
		m, err := parseMatrixFlags([]string{"--matrix", "--report", path, "--target-mean", tc.mean, "--target-p99", "2"})
		if err != nil {
			t.Fatal(err)
		}
		if err := readSaved(m, &saved); err != nil {
			t.Fatal(err)
		}
		if saved.Passed() != tc.pass || len(saved.Cells) != 1 || saved.Cells[0].Runs[1].Ratios.Oracle.Mean != 1.2 {
			t.Fatalf("target %s: passed %v, cells %+v", tc.mean, saved.Passed(), saved.Cells)
		}
	}
}

// TestMatrixBaselines checks which baselines run in every cell: lc-rr
// only with the rr entry pattern, and as --policies says.
func TestMatrixBaselines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--matrix"}, []string{policyOracle, policyLCProxy, policyLCEntry}},
		{[]string{"--matrix", "--entries", "one"}, []string{policyOracle, policyLCProxy}},
		{[]string{"--matrix", "--entries", "rr", "--policies", "oracle,lc,ttf"}, []string{policyOracle, policyLCProxy}},
		{[]string{"--matrix", "--entries", "rr", "--policies", "lc-rr,ttf"}, []string{policyLCEntry}},
	} {
		m, err := parseMatrixFlags(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.baselines(); !slices.Equal(got, tc.want) {
			t.Errorf("%q: baselines %v, want %v", tc.args, got, tc.want)
		}
		if slices.ContainsFunc(m.sovraPolicies(), isBaseline) {
			t.Errorf("%q: sovra policies %v", tc.args, m.sovraPolicies())
		}
	}
}

// TestLCRRDispatch checks lc-rr: requests enter its proxies, one per
// node, in turn, and each proxy chooses by its own requests in flight
// only. Four held requests through four proxies over two backends land
// one on each proxy, and all on the first backend: each proxy, having
// nothing of its own in flight, starts there (a single proxy would have
// split them two and two).
func TestLCRRDispatch(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	var mu sync.Mutex
	got := map[string]int{}
	rig := &routeRig{}
	for _, name := range []string{"n1", "n2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			got[name]++
			mu.Unlock()
			<-release
			_, _ = io.WriteString(w, `{"message":{"content":"ok"},"done":true}`)
		}))
		defer srv.Close()
		rig.simAddrs = append(rig.simAddrs, strings.TrimPrefix(srv.URL, "http://"))
		rig.setup.Nodes = append(rig.setup.Nodes, nodeSpec{ID: name})
	}
	rig.simAddrs = append(rig.simAddrs, rig.simAddrs...) // four nodes, two backends twice
	rig.setup.Nodes = append(rig.setup.Nodes, nodeSpec{ID: "n1"}, nodeSpec{ID: "n2"})
	m := &matrixFlags{}
	m.base.timeout = 10 * time.Second
	x := newMatrixRunner(m, backendsEqual, rig)
	defer x.close()
	defer free()
	d, err := x.dispatcher(policyLCEntry, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(x.lcRR) != 4 || x.lc != nil {
		t.Fatalf("%d lc-rr proxies (global lc started: %v), want 4", len(x.lcRR), x.lc != nil)
	}
	done := make(chan bench.RouteSample, 4)
	msgs := []chatMessage{{Role: "user", Content: "hi"}}
	for range 4 {
		go func() { s, _ := d.do(context.Background(), msgs, false, time.Now()); done <- s }()
	}
	testwait.For(t, 5*time.Second, "four requests at the backends", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["n1"]+got["n2"] == 4
	})
	for i, l := range x.lcRR {
		if a := l.proxy.Active(); !slices.Equal(a, []int{1, 0, 0, 0}) {
			t.Errorf("proxy %d: in flight %v, want one request, on the first backend", i, a)
		}
	}
	free()
	for range 4 {
		if s := <-done; s.Err != "" {
			t.Errorf("request failed: %s", s.Err)
		}
	}
}

// TestMatrixEvaluateLCByEntry checks which least-connections run the
// /lc ratios and the target are over: lc-rr for sovra's rr-entry runs,
// the global lc for one-entry runs, and the global lc, with a note, for
// rr-entry runs of a cell without lc-rr. rr-entry runs also carry their
// ratios over the global lc.
func TestMatrixEvaluateLCByEntry(t *testing.T) {
	targets := matrixTargets{Load: 80, MeanVsOracle: 10, P99VsOracle: 10, VsLC: 1}
	// The global lc: 100 ms; lc-rr: 200 ms; sovra: 150 ms through either entry.
	cell := func(withLCRR bool) *matrixCell {
		c := &matrixCell{Backends: backendsEqual, Request: reqUnary, Prompts: mixUnique, Load: 80}
		c.Runs = []*matrixRun{matrixRunOf(policyOracle, "", 100), matrixRunOf(policyLCProxy, "", 100)}
		if withLCRR {
			c.Runs = append(c.Runs, matrixRunOf(policyLCEntry, "", 200))
		}
		c.Runs = append(c.Runs, matrixRunOf(policyTTF, entryOne, 150), matrixRunOf(policyTTF, entryRR, 150))
		return c
	}
	for _, tc := range []struct {
		name     string
		withLCRR bool
		entry    string
		base     string
		lc       float64 // mean over the run's lc
		global   float64 // mean over the global lc (rr entry)
		misses   []string
		note     bool
	}{
		{"one entry: the global lc", true, entryOne, policyLCProxy, 1.5, 0, []string{"mean/LC", "p99/LC"}, false},
		{"rr entry: lc-rr", true, entryRR, policyLCEntry, 0.75, 1.5, nil, false},
		{"rr entry without lc-rr: the global lc", false, entryRR, policyLCProxy, 1.5, 1.5, []string{"mean/LC", "p99/LC"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cell(tc.withLCRR)
			rep := &matrixReport{Targets: targets, Cells: []*matrixCell{c}, lagLimit: time.Second}
			rep.evaluate()
			var r *matrixRun
			for _, run := range c.Runs {
				if run.Policy == policyTTF && run.Entry == tc.entry {
					r = run
				}
			}
			if r.Ratios.LCBase != tc.base || r.Ratios.LC.Mean != tc.lc || r.Ratios.LCGlobal.Mean != tc.global {
				t.Fatalf("over %q: /lc %.2f /glc %.2f; want over %q %.2f, %.2f", r.Ratios.LCBase, r.Ratios.LC.Mean, r.Ratios.LCGlobal.Mean, tc.base, tc.lc, tc.global)
			}
			if !r.Checked || !slices.Equal(r.Misses, tc.misses) {
				t.Fatalf("misses %v, want %v", r.Misses, tc.misses)
			}
			noted := slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, policyLCEntry+" was not run") })
			if noted != tc.note {
				t.Fatalf("notes %q", rep.Notes)
			}
			if tc.withLCRR {
				if rr := c.find(policyLCEntry); rr.Checked || rr.Ratios.LCBase != policyLCProxy || rr.Ratios.LC.Mean != 2 {
					t.Fatalf("lc-rr run %+v", rr)
				}
			}
			var out bytes.Buffer
			rep.WriteTable(&out)
			for _, want := range []string{"/glc mean", "for entry rr, lc-rr", "vs " + tc.base} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestOldReportLoads checks that a report saved before lc-rr existed
// (no lc-rr run, ratios without a baseline name) still loads with
// --report: rr-entry runs fall back to the global lc, and say so.
func TestOldReportLoads(t *testing.T) {
	const old = `{"targets":{"load":80,"mean_vs_oracle":1.1,"p99_vs_oracle":1.3,"vs_least_connections":1},
"cells":[{"backends":"equal","speeds":[2,2,2,2],"request":"unary","prompts":"unique","load":80,"rate":10,"runs":[
{"policy":"oracle","figures":{"sent":2,"ok":2,"latency":{"n":2,"mean_ns":100000000,"p99_ns":100000000}},"sim":{"requests":{"n1":2}},"max_lag_ns":0,"misrouted":0,"regret_ns":0,"ratios":{"oracle":{"latency_mean":0,"latency_p99":0},"least_connections":{"latency_mean":0,"latency_p99":0}},"checked":false},
{"policy":"lc","figures":{"sent":2,"ok":2,"latency":{"n":2,"mean_ns":100000000,"p99_ns":100000000}},"sim":{"requests":{"n1":2}},"max_lag_ns":0,"misrouted":0,"regret_ns":0,"ratios":{"oracle":{"latency_mean":1,"latency_p99":1},"least_connections":{"latency_mean":0,"latency_p99":0}},"checked":false},
{"policy":"ttf","entry":"rr","figures":{"sent":2,"ok":2,"latency":{"n":2,"mean_ns":105000000,"p99_ns":105000000}},"sim":{"requests":{"n1":2}},"max_lag_ns":0,"misrouted":0,"regret_ns":0,"ratios":{"oracle":{"latency_mean":1.05,"latency_p99":1.05},"least_connections":{"latency_mean":1.05,"latency_p99":1.05}},"misses":["mean/LC","p99/LC"],"checked":true}
]}],"notes":null,"settings":{"seed":"1"}}`
	path := filepath.Join(t.TempDir(), "old.json")
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := parseMatrixFlags([]string{"--matrix", "--report", path, "--target-lc", "1.1"})
	if err != nil {
		t.Fatal(err)
	}
	var rep matrixReport
	if err := readSaved(m, &rep); err != nil {
		t.Fatal(err)
	}
	r := rep.Cells[0].Runs[2]
	if r.Ratios.LCBase != policyLCProxy || r.Ratios.LC.Mean != 1.05 || r.Ratios.LCGlobal.Mean != 1.05 || !r.Checked || len(r.Misses) != 0 || !rep.Passed() {
		t.Fatalf("run %+v", r)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], policyLCEntry+" was not run") {
		t.Fatalf("notes %q", rep.Notes)
	}
	var out bytes.Buffer
	rep.WriteTable(&out)
	if !strings.Contains(out.String(), "1 of 1 checked runs met every target") {
		t.Fatalf("table:\n%s", out.String())
	}
}
