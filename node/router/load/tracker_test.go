package load

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestTrackerAverages(t *testing.T) {
	tests := []struct {
		name    string
		samples []Sample
		want    Model
	}{
		{
			name: "no sample",
			want: Model{},
		},
		{
			name:    "first sample sets the averages",
			samples: []Sample{{TTFT: 100 * time.Millisecond, OutTokens: 10, DecodeTime: time.Second}},
			want:    Model{TTFTMs: 100, OutTokens: 10, TokensPerSec: 10},
		},
		{
			name: "alpha 0.5 halves the way to each sample",
			samples: []Sample{
				{TTFT: 100 * time.Millisecond, OutTokens: 10, DecodeTime: time.Second},           // 100, 10, 10
				{TTFT: 200 * time.Millisecond, OutTokens: 30, DecodeTime: time.Second},           // 150, 20, 20
				{TTFT: 50 * time.Millisecond, OutTokens: 20, DecodeTime: 500 * time.Millisecond}, // 100, 20, 30
			},
			want: Model{TTFTMs: 100, OutTokens: 20, TokensPerSec: 30},
		},
		{
			name: "unmeasured fields leave their average alone",
			samples: []Sample{
				{TTFT: 100 * time.Millisecond, OutTokens: 10, DecodeTime: time.Second},
				{TTFT: 300 * time.Millisecond},                      // ttft only: 200
				{OutTokens: 30},                                     // tokens, no decode time: out 20
				{OutTokens: 50, DecodeTime: 500 * time.Microsecond}, // decode < 1ms: out 35, no speed
			},
			want: Model{TTFTMs: 200, OutTokens: 35, TokensPerSec: 10},
		},
		{
			name: "invalid samples are ignored",
			samples: []Sample{
				{TTFT: 100 * time.Millisecond, OutTokens: 10, DecodeTime: time.Second},
				{},
				{TTFT: -time.Second, OutTokens: -3, DecodeTime: time.Second},
				{DecodeTime: time.Second}, // a decode time without tokens
				{OutTokens: 0, DecodeTime: -time.Second},
			},
			want: Model{TTFTMs: 100, OutTokens: 10, TokensPerSec: 10},
		},
		{
			name: "speed starts with its first valid sample",
			samples: []Sample{
				{OutTokens: 10, DecodeTime: 999 * time.Microsecond},
				{OutTokens: 30, DecodeTime: time.Second},
			},
			want: Model{OutTokens: 20, TokensPerSec: 30},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(0.5)
			for _, s := range tt.samples {
				tr.Observe("m:latest", s)
			}
			if got := tr.Get("m:latest"); got != tt.want {
				t.Errorf("Get = %+v, want %+v", got, tt.want)
			}
			if got := tr.Get("other:latest"); got != (Model{}) {
				t.Errorf("Get(other) = %+v, want zero", got)
			}
		})
	}
}

func TestTrackerAlpha(t *testing.T) {
	tests := []struct {
		name  string
		alpha float64
		want  float64 // TTFTMs after samples of 100ms then 200ms
	}{
		{"zero means default", 0, 100 + DefaultAlpha*100},
		{"negative means default", -1, 100 + DefaultAlpha*100},
		{"quarter", 0.25, 125},
		{"one keeps the last sample", 1, 200},
		{"above one is one", 3, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(tt.alpha)
			tr.Observe("m", Sample{TTFT: 100 * time.Millisecond})
			tr.Observe("m", Sample{TTFT: 200 * time.Millisecond})
			if got := tr.Get("m").TTFTMs; got != tt.want {
				t.Errorf("TTFTMs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTrackerModelsAreSeparate(t *testing.T) {
	tr := NewTracker(0.5)
	tr.Observe("a:1", Sample{TTFT: 10 * time.Millisecond})
	tr.Observe("b:1", Sample{OutTokens: 7})
	want := map[string]Model{"a:1": {TTFTMs: 10}, "b:1": {OutTokens: 7}}
	got := tr.Snapshot()
	if len(got) != len(want) {
		t.Fatalf("Snapshot = %+v, want %+v", got, want)
	}
	for tag, m := range want {
		if got[tag] != m {
			t.Errorf("Snapshot[%s] = %+v, want %+v", tag, got[tag], m)
		}
	}
}

func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker(0.3)
	s := Sample{TTFT: 40 * time.Millisecond, OutTokens: 8, DecodeTime: 2 * time.Second}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				tr.Observe("m", s)
				_ = tr.Get("m")
			}
		})
	}
	wg.Wait()
	// Every sample is the same, so every average is that sample.
	if got, want := tr.Get("m"), (Model{TTFTMs: 40, OutTokens: 8, TokensPerSec: 4}); got != want {
		t.Errorf("Get = %+v, want %+v", got, want)
	}
}

// TestTrackerPrefillCost checks the cost of an uncached KiB of prompt:
// the slope of prompt time over uncached bytes, which leaves out the
// fixed cost every prompt pays, once the prompts vary; the mean time per
// KiB while they do not; nothing from prompts the cache held almost whole.
func TestTrackerPrefillCost(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	// Ollama's prompt time here: 40 ms, plus 10 ms a KiB.
	promptTime := func(kib float64) time.Duration { return ms(40 + 10*kib) }
	varied := NewTracker(0.2)
	for i := range 40 {
		kib := []float64{1, 4, 2, 8}[i%4]
		varied.Observe("m", Sample{TTFT: promptTime(kib), PromptBytes: int(kib * 1024), PromptTime: promptTime(kib)})
	}
	if got := varied.Get("m").PrefillMsPerKiB; math.Abs(got-10) > 0.01 {
		t.Fatalf("cost per KiB over varied prompts %.3f ms, want the slope, 10", got)
	}
	same := NewTracker(0.2)
	for range 10 {
		same.Observe("m", Sample{TTFT: promptTime(2), PromptBytes: 2048, PromptTime: promptTime(2)})
	}
	if got := same.Get("m"); math.Abs(got.PrefillMsPerKiB-30) > 0.01 || math.Abs(got.PromptKiB-2) > 1e-9 {
		t.Fatalf("prompts of one size: %+v, want the mean 60 ms / 2 KiB = 30 ms a KiB, 2 KiB a request", got)
	}
	// A prompt the cache held but for a few bytes takes the average
	// uncached prompt down, and is no sample of the cost per KiB.
	same.Observe("m", Sample{TTFT: ms(41), PromptBytes: 100, PromptTime: ms(41)})
	if got := same.Get("m"); math.Abs(got.PrefillMsPerKiB-30) > 0.01 || got.PromptKiB >= 2 {
		t.Fatalf("after a cached prompt: %+v", got)
	}
	if got := NewTracker(0).Get("m"); got.PrefillMsPerKiB != 0 || got.PromptKiB != 0 {
		t.Fatalf("nothing measured: %+v", got)
	}
}
