// Package testwait holds test helpers that several packages' tests share:
// waiting for a condition instead of sleeping, and a clock that moves only
// when a test moves it.
package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

// For polls cond until it holds, and fails t when it still does not after
// timeout.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Until(t, timeout, cond, func() string { return what })
}

// Until is For with a description made only when the wait fails, so that it
// can tell the state last seen.
func Until(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	// Poll every millisecond at first, then less often, so that long waits
	// leave the CPU to the code under test.
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// Clock is a clock that moves only when told; safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock standing at a fixed date.
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
