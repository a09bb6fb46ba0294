package bench

import (
	"math"
	"math/rand/v2"
	"time"
)

// Poisson is an open-loop schedule of random arrivals: the gaps between
// starts are exponentially distributed with mean 1/Rate, so that arrivals
// form a Poisson process, as independent users produce. The same Seed
// gives the same schedule.
type Poisson struct {
	// Rate is the mean number of arrivals per second.
	Rate float64
	// Duration bounds the time over which arrivals start.
	Duration time.Duration
	// MaxArrivals, when positive, bounds the number of arrivals.
	MaxArrivals int
	// Seed fixes the random sequence.
	Seed uint64
}

// Offsets returns the start time of every arrival, from the start of the
// schedule, in increasing order.
func (p Poisson) Offsets() []time.Duration {
	if p.Rate <= 0 || p.Duration <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(p.Seed, 0x5eed_0f_a771_7a15))
	capHint := int(math.Min(p.Rate*p.Duration.Seconds()*1.2+16, 1<<20))
	if p.MaxArrivals > 0 {
		capHint = min(capHint, p.MaxArrivals)
	}
	out := make([]time.Duration, 0, capHint)
	var at float64 // seconds
	for {
		at += rng.ExpFloat64() / p.Rate
		d := time.Duration(at * float64(time.Second))
		if d >= p.Duration || (p.MaxArrivals > 0 && len(out) >= p.MaxArrivals) {
			return out
		}
		out = append(out, d)
	}
}

// Exp returns an exponentially distributed duration with the given mean,
// drawn from rng: the think time of a user between two turns.
func Exp(rng *rand.Rand, mean time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	return time.Duration(rng.ExpFloat64() * float64(mean))
}
