package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func phase(stream bool, rate float64, target, server string, latMs []int, sent int, cpu time.Duration, events, simEvents int) *Phase {
	lat := ms1(latMs...)
	r := &Result{Target: target, Sent: sent, OK: sent, Latency: lat, Events: events}
	if stream {
		r.TTFT = lat
	}
	return &Phase{Stream: stream, Rate: rate, Server: server, Result: r, CPU: map[string]time.Duration{server: cpu, "other": time.Hour}, SimEvents: simEvents}
}

func checkByName(r *Report, prefix string) (Check, bool) {
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c, true
		}
	}
	return Check{}, false
}

func TestReportEvaluate(t *testing.T) {
	targets := Targets{CPURatio: 1.5, EventRatio: 1.5, AddedP99: 2 * time.Millisecond, P99Rate: 200}
	tests := []struct {
		name       string
		sovraCPU   time.Duration // per 100 requests; the baseline uses 100ms
		sovraLat   []int
		sseEvents  int
		wantCPU    float64
		wantCPUOK  bool
		wantP99    float64
		wantP99OK  bool
		wantComp   float64
		wantCompOK bool
	}{
		{"within targets", 140 * time.Millisecond, []int{2, 2, 3}, 1000, 1.4, true, 2, true, 1, true},
		{"exactly at the limits", 150 * time.Millisecond, []int{2, 2, 3}, 1000, 1.5, true, 2, true, 1, true},
		{"too much CPU", 160 * time.Millisecond, []int{2, 2, 3}, 1000, 1.6, false, 2, true, 1, true},
		{"too much added latency", 100 * time.Millisecond, []int{2, 2, 4}, 1000, 1, true, 3, false, 1, true},
		{"lost events", 100 * time.Millisecond, []int{1, 1, 1}, 999, 1, true, 0, true, 0.999, false},
		{"extra events", 100 * time.Millisecond, []int{1, 1, 1}, 1001, 1, true, 0, true, 1.001, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{Direct: "sim", Baseline: "base", Sovra: "sovra"}
			r.Phases = []*Phase{
				phase(false, 200, "direct", "sim", []int{1, 1, 1}, 100, 50*time.Millisecond, 0, 0),
				phase(false, 200, "baseline", "base", []int{1, 1, 2}, 100, 100*time.Millisecond, 0, 0),
				phase(false, 200, "sovra /v1", "sovra", tt.sovraLat, 100, tt.sovraCPU, 0, 0),
				phase(true, 10, "direct", "sim", []int{1}, 10, 0, 1000, 1000),
				phase(true, 10, "baseline", "base", []int{1}, 10, 100*time.Millisecond, 1000, 1000),
				phase(true, 10, "sovra /v1", "sovra", []int{1}, 10, 100*time.Millisecond, tt.sseEvents, 1000),
			}
			r.Evaluate(targets)
			c, ok := checkByName(r, "CPU per request at 200/s, sovra /v1")
			if !ok || !near(c.Value, tt.wantCPU) || c.Pass != tt.wantCPUOK {
				t.Errorf("CPU check %+v, want value %v pass %v", c, tt.wantCPU, tt.wantCPUOK)
			}
			c, ok = checkByName(r, "added p99 at 200/s, sovra /v1")
			if !ok || !near(c.Value, tt.wantP99) || c.Pass != tt.wantP99OK {
				t.Errorf("p99 check %+v, want value %v pass %v", c, tt.wantP99, tt.wantP99OK)
			}
			c, ok = checkByName(r, "stream completeness, sovra /v1")
			if !ok || !near(c.Value, tt.wantComp) || c.Pass != tt.wantCompOK {
				t.Errorf("completeness check %+v, want value %v pass %v", c, tt.wantComp, tt.wantCompOK)
			}
			if _, ok := checkByName(r, "stream completeness, direct"); ok {
				t.Error("the direct phase was checked for completeness")
			}
			if _, ok := checkByName(r, "CPU per event at 10/s, sovra /v1"); !ok {
				t.Error("no CPU per event check")
			}
			wantPass := tt.wantCPUOK && tt.wantP99OK && tt.wantCompOK
			if r.Passed() != wantPass {
				t.Errorf("Passed() = %v, want %v", r.Passed(), wantPass)
			}
			var buf bytes.Buffer
			r.WriteTable(&buf)
			if !strings.Contains(buf.String(), "sovra /v1") || !strings.Contains(buf.String(), "Targets") {
				t.Errorf("table lacks rows:\n%s", buf.String())
			}
		})
	}
}

func TestReportFailedRequestsFail(t *testing.T) {
	r := &Report{Direct: "sim", Baseline: "base", Sovra: "sovra"}
	p := phase(false, 50, "sovra /v1", "sovra", []int{1}, 10, time.Millisecond, 0, 0)
	p.Result.Errors = 1
	r.Phases = []*Phase{p}
	r.Evaluate(Targets{CPURatio: 1.5, EventRatio: 1.5, AddedP99: time.Millisecond, P99Rate: 200})
	if r.Passed() {
		t.Errorf("a run with a failed request passed: %+v", r.Checks)
	}
}

func TestPhasePerUnit(t *testing.T) {
	p := phase(true, 1, "x", "s", nil, 4, 80*time.Millisecond, 400, 0)
	if p.CPUPerRequest() != 20*time.Millisecond || p.CPUPerEvent() != 200*time.Microsecond {
		t.Errorf("per request %v, per event %v", p.CPUPerRequest(), p.CPUPerEvent())
	}
	if p.Completeness() != 0 {
		t.Errorf("completeness with unknown sim events = %v, want 0", p.Completeness())
	}
	empty := phase(false, 1, "x", "s", nil, 0, time.Second, 0, 0)
	if empty.CPUPerRequest() != 0 || Ratio(time.Second, 0) != 0 {
		t.Error("division by zero not guarded")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestReportClosedLoopMatchesItsBaseline: a closed-loop phase is held to
// the baseline's closed-loop phase, not to an open-loop one, and has its
// own checks, with its own ratios for requests and events.
func TestReportClosedLoopMatchesItsBaseline(t *testing.T) {
	closed := func(p *Phase) *Phase { p.Rate, p.Clients = 0, 16; return p }
	r := &Report{Direct: "sim", Baseline: "base", Sovra: "sovra"}
	r.Phases = []*Phase{
		phase(false, 200, "baseline", "base", []int{1}, 100, 100*time.Millisecond, 0, 0),
		phase(false, 200, "sovra /v1", "sovra", []int{1}, 100, 150*time.Millisecond, 0, 0),
		closed(phase(false, 0, "baseline", "base", []int{1}, 100, 50*time.Millisecond, 0, 0)),
		closed(phase(false, 0, "sovra /v1", "sovra", []int{1}, 100, 150*time.Millisecond, 0, 0)),
		closed(phase(true, 0, "baseline", "base", []int{1}, 10, 100*time.Millisecond, 1000, 1000)),
		closed(phase(true, 0, "sovra /v1", "sovra", []int{1}, 10, 180*time.Millisecond, 1000, 1000)),
	}
	r.Evaluate(Targets{CPURatio: 2, EventRatio: 1.5, AddedP99: time.Millisecond, P99Rate: 200})
	for _, want := range []struct {
		name  string
		value float64
		pass  bool
	}{
		{"CPU per request at 200/s, sovra /v1", 1.5, true},
		{"CPU per request at 16 clients, sovra /v1", 3, false},
		{"CPU per event at 16 clients, sovra /v1", 1.8, false},
	} {
		c, ok := checkByName(r, want.name)
		if !ok || !near(c.Value, want.value) || c.Pass != want.pass {
			t.Errorf("%s: %+v, want value %v pass %v", want.name, c, want.value, want.pass)
		}
	}
	var buf bytes.Buffer
	r.WriteTable(&buf)
	if !strings.Contains(buf.String(), "16 clients") {
		t.Errorf("the table does not name the closed loop:\n%s", buf.String())
	}
}
