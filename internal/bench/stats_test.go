package bench

import (
	"testing"
	"time"
)

func ms1(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func seq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", ms1(7), 50, 7 * time.Millisecond},
		{"single p99", ms1(7), 99, 7 * time.Millisecond},
		{"p0 is the minimum", seq(10), 0, 1 * time.Millisecond},
		{"p100 is the maximum", seq(10), 100, 10 * time.Millisecond},
		{"p50 of 1..100", seq(100), 50, 50 * time.Millisecond},
		{"p99 of 1..100", seq(100), 99, 99 * time.Millisecond},
		{"p99 of 1..1000", seq(1000), 99, 990 * time.Millisecond},
		{"p99 of 1..10 is the top", seq(10), 99, 10 * time.Millisecond},
		{"p90 of 1..10", seq(10), 90, 9 * time.Millisecond},
		{"p50 of an even count takes the lower middle", ms1(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p51 of four rounds up", ms1(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"p25 of four", ms1(10, 20, 30, 40), 25, 10 * time.Millisecond},
		{"p1 of 1..1000", seq(1000), 1, 10 * time.Millisecond},
		{"p99.9 of 1..1000", seq(1000), 99.9, 999 * time.Millisecond},
		{"outlier only at the top", ms1(1, 1, 1, 1, 1, 1, 1, 1, 1, 500), 99, 500 * time.Millisecond},
		{"negative p", seq(3), -5, 1 * time.Millisecond},
		{"p above 100", seq(3), 150, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	in := ms1(5, 1, 4, 2, 3)
	s := Summarize(in)
	want := Summary{N: 5, Min: ms1(1)[0], P50: ms1(3)[0], P90: ms1(5)[0], P99: ms1(5)[0], Max: ms1(5)[0], Mean: ms1(3)[0]}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if in[0] != 5*time.Millisecond {
		t.Errorf("Summarize reordered its input: %v", in)
	}
	if (Summarize(nil) != Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", Summarize(nil))
	}
}

func TestLoadSchedule(t *testing.T) {
	tests := []struct {
		load     Load
		count    int
		interval time.Duration
	}{
		{Load{Rate: 200, Duration: 3 * time.Second}, 600, 5 * time.Millisecond},
		{Load{Rate: 500, Duration: 3 * time.Second, MaxRequests: 1000}, 1000, 2 * time.Millisecond},
		{Load{Rate: 50, Duration: 100 * time.Millisecond}, 5, 20 * time.Millisecond},
		{Load{Rate: 1, Duration: 10 * time.Millisecond}, 1, time.Second},
		{Load{Rate: 0, Duration: time.Second}, 0, 0},
		{Load{Rate: 100, Duration: 0}, 0, 10 * time.Millisecond},
		{Load{Rate: 3, Duration: time.Second}, 3, 333333333},
	}
	for _, tt := range tests {
		if got := tt.load.Count(); got != tt.count {
			t.Errorf("%+v.Count() = %d, want %d", tt.load, got, tt.count)
		}
		if got := tt.load.Interval(); got != tt.interval {
			t.Errorf("%+v.Interval() = %v, want %v", tt.load, got, tt.interval)
		}
	}
}
