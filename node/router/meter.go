package router

import (
	"math"
	"sync"
	"time"
)

// meterWindow is the time constant of the arrival meters: long enough to
// smooth a Poisson stream, short enough to follow a change of load
// within a few seconds.
const meterWindow = 2 * time.Second

// meter counts events with exponential decay: in a steady stream of rate
// r the count settles at r times meterWindow.
type meter struct {
	count float64
	at    time.Time
}

func (m *meter) decay(now time.Time) {
	if !m.at.IsZero() && now.After(m.at) {
		m.count *= math.Exp(-float64(now.Sub(m.at)) / float64(meterWindow))
	}
	if now.After(m.at) {
		m.at = now
	}
}

func (m *meter) add(now time.Time) {
	m.decay(now)
	m.count++
}

// rate is the recent rate of events per second.
func (m *meter) rate(now time.Time) float64 {
	m.decay(now)
	return m.count / meterWindow.Seconds()
}

// meters are meters by key, safe for concurrent use.
type meters[K comparable] struct {
	mu sync.Mutex
	m  map[K]*meter
}

func (ms *meters[K]) add(k K, now time.Time) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = map[K]*meter{}
	}
	m := ms.m[k]
	if m == nil {
		m = &meter{}
		ms.m[k] = m
	}
	m.add(now)
}

func (ms *meters[K]) rate(k K, now time.Time) float64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[k]; m != nil {
		return m.rate(now)
	}
	return 0
}
