package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPoissonMeanRate(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		dur  time.Duration
		tol  float64 // relative
	}{
		{"20 per second for 10 minutes", 20, 10 * time.Minute, 0.02},
		{"500 per second for a minute", 500, time.Minute, 0.01},
		{"one per second for an hour", 1, time.Hour, 0.03},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offs := Poisson{Rate: tt.rate, Duration: tt.dur, Seed: 42}.Offsets()
			got := float64(len(offs)) / tt.dur.Seconds()
			if math.Abs(got-tt.rate)/tt.rate > tt.tol {
				t.Errorf("mean rate %.3f/s, want %.3f/s within %.0f%%", got, tt.rate, 100*tt.tol)
			}
			if !slices.IsSorted(offs) || offs[0] < 0 || offs[len(offs)-1] >= tt.dur {
				t.Errorf("offsets not increasing within [0, %s)", tt.dur)
			}
			// Exponential gaps: the standard deviation equals the mean.
			var sum, sq float64
			prev := time.Duration(0)
			for _, o := range offs {
				g := (o - prev).Seconds()
				sum += g
				sq += g * g
				prev = o
			}
			n := float64(len(offs))
			mean := sum / n
			sd := math.Sqrt(sq/n - mean*mean)
			if math.Abs(sd-mean)/mean > 0.05 {
				t.Errorf("gap standard deviation %.4fs, mean %.4fs: not exponential", sd, mean)
			}
		})
	}
}

func TestPoissonDeterministic(t *testing.T) {
	p := Poisson{Rate: 50, Duration: 10 * time.Second, Seed: 7}
	a, b := p.Offsets(), p.Offsets()
	if !slices.Equal(a, b) {
		t.Error("the same seed gave two schedules")
	}
	p.Seed = 8
	if slices.Equal(a, p.Offsets()) {
		t.Error("two seeds gave the same schedule")
	}
}

func TestPoissonBounds(t *testing.T) {
	if got := (Poisson{Rate: 1000, Duration: time.Minute, MaxArrivals: 25, Seed: 1}).Offsets(); len(got) != 25 {
		t.Errorf("MaxArrivals 25 gave %d arrivals", len(got))
	}
	for _, p := range []Poisson{{Rate: 0, Duration: time.Second}, {Rate: 10, Duration: 0}, {Rate: -1, Duration: time.Second}} {
		if got := p.Offsets(); len(got) != 0 {
			t.Errorf("%+v gave %d arrivals", p, len(got))
		}
	}
}

func TestExpMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var sum time.Duration
	const n = 100000
	for range n {
		sum += Exp(rng, 200*time.Millisecond)
	}
	if mean := sum / n; mean < 196*time.Millisecond || mean > 204*time.Millisecond {
		t.Errorf("mean %s, want 200ms within 2%%", mean)
	}
	if Exp(rng, 0) != 0 {
		t.Error("a zero mean gave a non-zero time")
	}
}
