package main

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestParseProxyFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		rates   []float64
		wantErr bool
	}{
		{"defaults", nil, []float64{50, 200, 500}, false},
		{"own rates with spaces", []string{"--rates", "10, 20.5 ,30"}, []float64{10, 20.5, 30}, false},
		{"streams only", []string{"--rates", ""}, nil, false},
		{"nothing to measure", []string{"--rates", "", "--stream-rate", "0", "--clients", "0"}, nil, true},
		{"closed loop only", []string{"--rates", "", "--stream-rate", "0"}, nil, false},
		{"bad rate", []string{"--rates", "50,fast"}, nil, true},
		{"zero rate", []string{"--rates", "0"}, nil, true},
		{"negative rate", []string{"--rates", "-5"}, nil, true},
		{"zero duration", []string{"--duration", "0s"}, nil, true},
		{"no tokens", []string{"--tokens", "0"}, nil, true},
		{"negative token rate", []string{"--token-rate", "-1"}, nil, true},
		{"stray argument", []string{"extra"}, nil, true},
		{"unknown flag", []string{"--nope"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseProxyFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseProxyFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if err != nil {
				if _, ok := err.(usageError); !ok {
					t.Errorf("error %v is not a usage error", err)
				}
				return
			}
			if !slices.Equal(f.rates, tt.rates) {
				t.Errorf("rates %v, want %v", f.rates, tt.rates)
			}
		})
	}
}

func TestParseProxyFlagsTargets(t *testing.T) {
	f, err := parseProxyFlags([]string{"--cpu-ratio", "3", "--event-ratio", "1.2", "--added-p99", "3ms", "--p99-rate", "100", "--clients", "4"})
	if err != nil {
		t.Fatal(err)
	}
	if f.targets.CPURatio != 3 || f.targets.EventRatio != 1.2 || f.targets.AddedP99 != 3*time.Millisecond || f.targets.P99Rate != 100 || f.clients != 4 {
		t.Errorf("targets %+v, clients %d", f.targets, f.clients)
	}
	def, _ := parseProxyFlags(nil)
	if def.targets.CPURatio != 2 || def.targets.EventRatio != 1.5 || def.targets.AddedP99 != 2*time.Millisecond || def.targets.P99Rate != 200 || def.clients != 16 {
		t.Errorf("default targets %+v, clients %d; want 2x per request, 1.5x per event, 2ms at 200/s, 16 clients", def.targets, def.clients)
	}
	if _, err := parseProxyFlags([]string{"--clients", "-1"}); err == nil {
		t.Error("--clients -1 accepted")
	}
}

// TestSimNeverTheBottleneck pins the simulator settings that keep it out of
// the measurement: any time to first token, prompt cost, load time or
// global pacing would hide sovra's overhead behind the simulator's.
func TestSimNeverTheBottleneck(t *testing.T) {
	args := simArgs("127.0.0.1:1")
	want := map[string]string{
		"--ttft": "0s", "--prompt-token-cost": "0s", "--load": "0s",
		"--tokens-per-second": "0", "--parallel": "1024", "--max-queue": "8192",
	}
	got := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		got[args[i]] = args[i+1]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("simulator flag %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestChatBody(t *testing.T) {
	for _, stream := range []bool{false, true} {
		var v struct {
			Model    string `json:"model"`
			Stream   *bool  `json:"stream"`
			Messages []struct {
				Role, Content string
			} `json:"messages"`
		}
		if err := json.Unmarshal(chatBody("m:latest", stream), &v); err != nil {
			t.Fatal(err)
		}
		if v.Model != "m:latest" || v.Stream == nil || *v.Stream != stream || len(v.Messages) != 2 || v.Messages[1].Role != "user" {
			t.Errorf("body for stream=%v: %+v", stream, v)
		}
	}
}
