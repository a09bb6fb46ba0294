package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/bench"
	"github.com/sovra/sovra/internal/ollamasim"
)

func TestParseRouteFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, f *routeFlags)
	}{
		{"defaults", nil, false, func(t *testing.T, f *routeFlags) {
			if !slices.Equal(f.speeds, []float64{1, 1, 2, 0.5}) || !slices.Equal(f.slots, []int{2, 2, 4, 1}) {
				t.Errorf("nodes %v %v", f.speeds, f.slots)
			}
			if !slices.Equal(f.loads, []float64{50, 80, 95}) || !slices.Equal(f.policies, allPolicies) || !slices.Equal(f.mtPolicies, []string{policyTTF, policyRR}) {
				t.Errorf("loads %v policies %v mt %v", f.loads, f.policies, f.mtPolicies)
			}
			if f.duration != 15*time.Second || f.timeout != 30*time.Second || f.queueTimeout != 15*time.Second {
				t.Errorf("duration %s timeout %s queue timeout %s", f.duration, f.timeout, f.queueTimeout)
			}
			if f.targets != (routeTargets{Load: 80, MeanVsOracle: 1.1, P99VsOracle: 1.3, P99VsLC: 0.5, Affinity: 0.8, MaxNodeLoad: 1.25}) {
				t.Errorf("targets %+v", f.targets)
			}
		}},
		{"quick keeps what is given", []string{"--quick", "--duration", "2s"}, false, func(t *testing.T, f *routeFlags) {
			if f.duration != 2*time.Second || f.warmup != time.Second || f.mtDuration != 4*time.Second || f.timeout != 12*time.Second {
				t.Errorf("duration %s warmup %s mt %s timeout %s", f.duration, f.warmup, f.mtDuration, f.timeout)
			}
		}},
		{"own cluster", []string{"--speeds", "1, 3", "--slots", "1,2", "--policies", "ttf,oracle,ttf", "--loads", "70"}, false, func(t *testing.T, f *routeFlags) {
			if !slices.Equal(f.speeds, []float64{1, 3}) || !slices.Equal(f.policies, []string{policyTTF, policyOracle}) || !slices.Equal(f.loads, []float64{70}) {
				t.Errorf("%v %v %v", f.speeds, f.policies, f.loads)
			}
		}},
		{"multi-turn only", []string{"--loads", "", "--policies", "ttf"}, false, nil},
		{"nothing to measure", []string{"--loads", "", "--mt-policies", ""}, true, nil},
		{"one node", []string{"--speeds", "1", "--slots", "1"}, true, nil},
		{"slots do not match speeds", []string{"--slots", "1,2"}, true, nil},
		{"zero speed", []string{"--speeds", "1,0,1,1"}, true, nil},
		{"zero slots", []string{"--slots", "2,0,4,1"}, true, nil},
		{"unknown policy", []string{"--policies", "random"}, true, nil},
		{"oracle cannot chat in turns", []string{"--mt-policies", "oracle"}, true, nil},
		{"load too high", []string{"--loads", "250"}, true, nil},
		{"one turn", []string{"--turns", "1"}, true, nil},
		{"prompt too short to be unique", []string{"--prompt-words", "1"}, true, nil},
		{"zero timeout", []string{"--timeout", "0s"}, true, nil},
		{"stray argument", []string{"extra"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseRouteFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseRouteFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if err != nil {
				if _, ok := err.(usageError); !ok {
					t.Errorf("error %v is not a usage error", err)
				}
				return
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func defaultSetup(t *testing.T) (*routeFlags, routeSetup) {
	t.Helper()
	f, err := parseRouteFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	return f, newRouteSetup(f)
}

func TestRouteSetup(t *testing.T) {
	_, s := defaultSetup(t)
	// At speed 1: 40ms + 60 tokens x 0.5ms = 70ms to the first token,
	// then 23 tokens at 100/s = 230ms.
	want := []struct {
		prefill, service time.Duration
		capacity         float64
	}{
		{70 * time.Millisecond, 300 * time.Millisecond, 2 / 0.3},
		{70 * time.Millisecond, 300 * time.Millisecond, 2 / 0.3},
		{35 * time.Millisecond, 150 * time.Millisecond, 4 / 0.15},
		{140 * time.Millisecond, 600 * time.Millisecond, 1 / 0.6},
	}
	if s.PromptTokens != 60 {
		t.Fatalf("prompt tokens %d, want 60", s.PromptTokens)
	}
	for i, n := range s.Nodes {
		if n.Prefill != want[i].prefill || n.Service != want[i].service || math.Abs(n.Capacity-want[i].capacity) > 1e-9 {
			t.Errorf("%s: prefill %s service %s capacity %.3f, want %+v", n.ID, n.Prefill, n.Service, n.Capacity, want[i])
		}
	}
	if math.Abs(s.Capacity-125.0/3) > 1e-9 || math.Abs(s.rate(80)-100.0/3) > 1e-9 {
		t.Errorf("capacity %.4f, rate at 80%% %.4f", s.Capacity, s.rate(80))
	}
	// A cached history costs cached tokens: a follow-up with its history
	// cached is cheaper than the first turn's service plus history.
	unc, cached := s.turnTokens(3, true)
	missU, missC := s.turnTokens(3, false)
	if unc != s.UserTokens || unc+cached != missU+missC || missC != s.SystemTokens {
		t.Errorf("turn 3: hit %d+%d, miss %d+%d", unc, cached, missU, missC)
	}
	n := s.Nodes[0]
	hit, miss := n.service(24, unc+cached, cached), n.service(24, missU+missC, missC)
	if want := time.Duration(missU-unc) * (n.PromptCost - n.CachedCost); miss-hit != want {
		t.Errorf("a cached history saves %s (%s vs %s), want %s", miss-hit, hit, miss, want)
	}
	if math.Abs(s.convRate(60, 6)*6-0.6*s.MTCapacity) > 1e-9 {
		t.Errorf("conversation rate %.3f for capacity %.3f", s.convRate(60, 6), s.MTCapacity)
	}
}

// TestSimArgs checks that every simulator gets its speed's timings and
// slots, written so that they parse back exactly.
func TestSimArgs(t *testing.T) {
	_, s := defaultSetup(t)
	for _, n := range s.Nodes {
		args := n.simArgs("127.0.0.1:1", s.AnswerTokens)
		got := map[string]string{}
		for i := 0; i+1 < len(args); i += 2 {
			got[args[i]] = args[i+1]
		}
		for flag, d := range map[string]time.Duration{"--ttft": n.TTFT, "--prompt-token-cost": n.PromptCost, "--cached-token-cost": n.CachedCost} {
			if v, err := time.ParseDuration(got[flag]); err != nil || v != d {
				t.Errorf("%s %s = %q, want %s", n.ID, flag, got[flag], d)
			}
		}
		if got["--parallel"] != itoa(n.Slots) || got["--response-tokens"] != "24" || got["--load"] != "0s" || got["--prefix-cache"] == "" {
			t.Errorf("%s: %v", n.ID, args)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPromptTokens checks that the prompts cost what the setup assumes,
// by the simulator's own tokenizer.
func TestPromptTokens(t *testing.T) {
	f, s := defaultSetup(t)
	for _, i := range []int{0, 7, 35, 36, 1295, 99999, 1679615, 1679616} {
		var req struct {
			Model    string        `json:"model"`
			Messages []chatMessage `json:"messages"`
			Stream   bool          `json:"stream"`
		}
		if err := json.Unmarshal(singleBody("m", base36(3), i, f.promptWords), &req); err != nil {
			t.Fatal(err)
		}
		if len(req.Messages) != 1 || !req.Stream || req.Model != "m" {
			t.Fatalf("body %+v", req)
		}
		if got := messageOverhead + ollamasim.CountTokens(req.Messages[0].Content); got != s.PromptTokens {
			t.Errorf("request %d: %d prompt tokens, want %d: %q", i, got, s.PromptTokens, req.Messages[0].Content)
		}
	}
	a := string(singleBody("m", "0001", 5, 10))
	if a == string(singleBody("m", "0001", 6, 10)) || a == string(singleBody("m", "0002", 5, 10)) {
		t.Error("prompts repeat across requests or points")
	}
	for _, k := range []int{0, 5, 11} {
		text := turnText("zzzz", 123456, k, f.userWords)
		if got := messageOverhead + ollamasim.CountTokens(text); got != s.UserTokens {
			t.Errorf("turn %d: %d tokens, want %d: %q", k, got, s.UserTokens, text)
		}
	}
	if got := messageOverhead + ollamasim.CountTokens(words(f.systemWords, "sys", 0)); got != s.SystemTokens {
		t.Errorf("system prompt: %d tokens, want %d", got, s.SystemTokens)
	}
	for _, w := range filler {
		if len(w) > 4 {
			t.Errorf("filler word %q costs more than one token", w)
		}
	}
}

func TestBase36(t *testing.T) {
	for i, want := range map[int]string{0: "0000", 35: "000z", 36: "0010", 1679615: "zzzz", 1679616: "0000"} {
		if got := base36(i); got != want {
			t.Errorf("base36(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestParseFeatures(t *testing.T) {
	help := `Flags:
      --routing-policy string   how a replica is chosen (default "ttf")
      --slots int               generations at once (default 1)
      --queue-max int           requests that may wait
      --load-interval duration  how often
      --admin-token-file string file holding the management token
      --idle-timeout duration   close keep-alive connections idle this long`
	got := parseFeatures(help)
	want := sovraFeatures{RoutingPolicy: true, Slots: true, QueueMax: true, LoadInterval: true, TokenFiles: true}
	if got != want {
		t.Errorf("features %+v, want %+v", got, want)
	}
	if parseFeatures("      --idle-timeout duration  a queue-timeout is mentioned") != (sovraFeatures{}) {
		t.Error("a mention in a description counted as a flag")
	}
}

func TestReadHeaders(t *testing.T) {
	h := http.Header{}
	h.Set(hdrNode, "n3")
	h.Set(hdrQueue, "12.5")
	h.Set(hdrRoute, "affinity")
	h.Set(hdrAttempts, "2")
	var s bench.RouteSample
	readHeaders(&s, h)
	if s.Node != "n3" || !s.HasQueue || s.Queue != 12500*time.Microsecond || s.Route != "affinity" || s.Attempts != 2 {
		t.Errorf("sample %+v", s)
	}
	var none bench.RouteSample
	readHeaders(&none, http.Header{hdrQueue: {"soon"}})
	if none.HasQueue || none.Node != "" {
		t.Errorf("sample from bad headers %+v", none)
	}
}

func TestCollector(t *testing.T) {
	stream := `{"message":{"role":"assistant","content":"Hello"},"done":false}
{"message":{"role":"assistant","content":" there."},"done":false}
{"message":{"role":"assistant","content":""},"done":true}
`
	c := &collector{collect: true}
	first := 0
	if err := bench.ReadLines(bufioReader(stream), c, func() { first++ }); err != nil {
		t.Fatal(err)
	}
	if c.text.String() != "Hello there." || !c.Complete() || first != 1 || c.errText != "" {
		t.Errorf("text %q complete %v first %d err %q", c.text.String(), c.Complete(), first, c.errText)
	}
	c = &collector{}
	_ = bench.ReadLines(bufioReader(`{"message":{"content":"a"},"done":false}`+"\n"+`{"error":"backend failed"}`+"\n"), c, nil)
	if c.errText != `"backend failed"` || c.Complete() {
		t.Errorf("in-band error %q complete %v", c.errText, c.Complete())
	}
}

// point builds a report point whose TTFTs are the given milliseconds.
func testPoint(policy string, load float64, ttftMs ...int) *routePoint {
	var samples []bench.RouteSample
	for _, v := range ttftMs {
		samples = append(samples, bench.RouteSample{Node: "n1", TTFT: time.Duration(v) * time.Millisecond, Conv: -1})
	}
	return &routePoint{Policy: policy, Load: load, Figures: bench.SummarizeRoute(samples)}
}

func TestRouteReportEvaluate(t *testing.T) {
	_, s := defaultSetup(t)
	targets := routeTargets{Load: 80, MeanVsOracle: 1.1, P99VsOracle: 1.3, P99VsLC: 0.5, Affinity: 0.8, MaxNodeLoad: 1.25}
	tests := []struct {
		name   string
		ttf    []int
		lc     []int
		pass   []bool // mean/oracle, p99/oracle, p99/LC, failed requests
		values []float64
	}{
		// The oracle: mean 100ms, p99 200ms.
		{"within", []int{60, 60, 180}, []int{300, 300, 600}, []bool{true, true, true, true}, []float64{1, 0.9, 0.3, 0}},
		{"mean too high", []int{150, 150, 250}, []int{300, 300, 600}, []bool{false, true, true, true}, nil},
		{"p99 too high against the oracle", []int{20, 20, 270}, []int{300, 300, 600}, []bool{true, false, true, true}, nil},
		{"not half of least-connections", []int{60, 60, 180}, []int{100, 100, 300}, []bool{true, true, false, true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &routeReport{Setup: s, Targets: targets, Features: sovraFeatures{RoutingPolicy: true, Slots: true}}
			r.Points = []*routePoint{testPoint(policyOracle, 80, 50, 50, 200), testPoint(policyTTF, 80, tt.ttf...), testPoint(policyLC, 80, tt.lc...)}
			for _, p := range r.Points {
				p.Figures.QueueKnown = p.Figures.OK
			}
			r.evaluate()
			if len(r.Checks) != 4 {
				t.Fatalf("checks %+v", r.Checks)
			}
			for i, c := range r.Checks {
				if c.Pass != tt.pass[i] {
					t.Errorf("%s", c)
				}
				if tt.values != nil && math.Abs(c.Value-tt.values[i]) > 1e-9 {
					t.Errorf("%s: value %v, want %v", c.Name, c.Value, tt.values[i])
				}
			}
			if r.Passed() != !slices.Contains(tt.pass, false) {
				t.Errorf("passed %v", r.Passed())
			}
		})
	}
	t.Run("missing policies are noted, not failed", func(t *testing.T) {
		r := &routeReport{Setup: s, Targets: targets, Features: sovraFeatures{RoutingPolicy: true, Slots: true}}
		r.Points = []*routePoint{testPoint(policyTTF, 80, 100)}
		r.evaluate()
		if !r.Passed() || !strings.Contains(strings.Join(r.Notes, "\n"), "oracle targets not checked") {
			t.Errorf("checks %v notes %v", r.Checks, r.Notes)
		}
	})
	t.Run("multi-turn", func(t *testing.T) {
		r := &routeReport{Setup: s, Targets: targets, Features: sovraFeatures{RoutingPolicy: true, Slots: true}}
		c := &convPoint{Policy: policyTTF, FollowUps: 100, SameNode: 83}
		c.Loads = bench.NodeLoads(s.ids(), map[string]int{"n1": 16, "n2": 16, "n3": 64, "n4": 4}, s.capacities(true))
		r.Convs = []*convPoint{c, {Policy: policyRR, FollowUps: 100, SameNode: 20}}
		r.evaluate()
		if len(r.Checks) != 2 || !r.Checks[0].Pass || r.Checks[0].Value != 83 || !r.Checks[1].Pass {
			t.Errorf("checks %v", r.Checks)
		}
	})
}

func TestNodeCountsFallback(t *testing.T) {
	sim := simFigures{Requests: map[string]int{"n1": 3, "n2": 1}}
	withHeaders := bench.SummarizeRoute([]bench.RouteSample{{Node: "n2"}, {Node: "n2"}})
	if counts, from := nodeCounts(withHeaders, sim, false); from != fromHeader || counts["n2"] != 2 {
		t.Errorf("%v from %s", counts, from)
	}
	without := bench.SummarizeRoute([]bench.RouteSample{{Node: "n2"}, {}})
	if counts, from := nodeCounts(without, sim, false); from != fromSim || counts["n1"] != 3 {
		t.Errorf("%v from %s", counts, from)
	}
}

func TestRouteReportTable(t *testing.T) {
	_, s := defaultSetup(t)
	r := &routeReport{Setup: s, Targets: routeTargets{Load: 80, MeanVsOracle: 1.1, P99VsOracle: 1.3, P99VsLC: 0.5, Affinity: 0.8, MaxNodeLoad: 1.25},
		Settings: map[string]string{"seed": "1"}}
	r.Points = []*routePoint{testPoint(policyOracle, 80, 50, 60), testPoint(policyTTF, 80, 55, 66)}
	for _, p := range r.Points {
		p.setShares(s, p.Policy == policyOracle)
	}
	r.evaluate()
	var b bytes.Buffer
	r.WriteTable(&b)
	out := b.String()
	for _, want := range []string{"capacity/s", "41.67", "mean/oracle", "1.10x", "ttf mean TTFT at 80% / oracle's: 1.10x <= 1.10x  PASS", "n/a", "Settings: seed=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// TestConvLoadsSteadyState checks that node loads count only the turns of
// the steady state, by their Sovra-Node.
func TestConvLoadsSteadyState(t *testing.T) {
	_, s := defaultSetup(t)
	var samples []bench.RouteSample
	add := func(node string, start time.Duration, n int) {
		for range n {
			samples = append(samples, bench.RouteSample{Node: node, Start: start})
		}
	}
	add("n3", time.Second, 100) // ramp-up: all on the fast node
	// Steady state, in proportion to the capacities 16/16/64/4 except n4.
	add("n1", 6*time.Second, 16)
	add("n2", 7*time.Second, 16)
	add("n3", 8*time.Second, 68)
	add("n1", 21*time.Second, 50) // ramp-down
	c := &convPoint{SteadyFrom: 5 * time.Second, SteadyTo: 20 * time.Second, samples: samples}
	c.Figures = bench.SummarizeRoute(samples)
	c.setLoads(s)
	if c.SteadyTurns != 100 || c.LoadFrom != fromHeader {
		t.Fatalf("%d steady turns from %s", c.SteadyTurns, c.LoadFrom)
	}
	want := []float64{1, 1, 68.0 / 64, 0}
	for i, l := range c.Loads {
		if math.Abs(l.Relative-want[i]) > 1e-4 { // durations round to nanoseconds
			t.Errorf("%s relative load %.4f, want %.4f", l.Node, l.Relative, want[i])
		}
	}
}
