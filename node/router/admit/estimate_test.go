package admit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

func TestHoldAverage(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		want    time.Duration
		ok      bool
	}{
		{"none", nil, 0, false},
		{"too few", []time.Duration{time.Second, time.Second, time.Second, time.Second}, 0, false},
		{"steady", []time.Duration{4 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}, 4 * time.Second, true},
		{"moves a fifth of the way", []time.Duration{10 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second, 20 * time.Second}, 12 * time.Second, true},
		{"negative counts as zero", []time.Duration{-time.Second, 0, 0, 0, 0}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(Config{})
			for _, d := range tt.samples {
				q.sample(d)
			}
			got, ok := q.meanHold()
			if got != tt.want || ok != tt.ok {
				t.Fatalf("meanHold() = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestWaitTooLong(t *testing.T) {
	clk := testwait.NewClock()
	q := New(Config{Slots: 1, MaxQueue: 100, Timeout: 10 * time.Second, Now: clk.Now})
	for range minHoldSamples - 1 {
		tk := mustAcquire(t, q, "a")
		clk.Advance(4 * time.Second)
		tk.Release()
	}

	// Four samples: the mean is not trusted yet, so however long the
	// queue, nobody is refused for the wait.
	holder := mustAcquire(t, q, "a")
	out := make(chan outcome, 8)
	enqueueAll(t, q, []string{"a", "a", "a", "a"}, out)

	// The fifth release makes the mean 4s; a0 takes the slot, a1..a3 wait.
	clk.Advance(4 * time.Second)
	holder.Release()
	first := recv(t, out)
	if first.err != nil || first.tag != "a0" {
		t.Fatalf("first grant %s: %v", first.tag, first.err)
	}

	// A fourth waiter of a would wait (3+1) x 4s = 16s > 10s.
	_, err := q.Acquire(context.Background(), "a")
	re := mustReject(t, err, ErrWaitTooLong)
	if re.RetryAfter != 6*time.Second {
		t.Errorf("RetryAfter = %v, want 6s (16s estimated - 10s limit)", re.RetryAfter)
	}
	if !strings.Contains(re.Error(), "16s") || !strings.Contains(re.Error(), "10s") {
		t.Errorf("message %q does not give the estimate and the limit", re.Error())
	}

	// Key b passes a's backlog: one turn of a, then b: 2 x 4s = 8s.
	enqueueAll(t, q, []string{"b"}, out)
	// A second b waits for b0 and two turns of a: 4 x 4s = 16s.
	_, err = q.Acquire(context.Background(), "b")
	mustReject(t, err, ErrWaitTooLong)
	wantStats(t, q, Stats{Running: 1, Queued: 4, Slots: 1})

	got := grantOrder(t, first.t, 4, out)
	if want := "a1 b0 a2 a3"; strings.Join(got, " ") != want {
		t.Fatalf("grant order %v, want %s", got, want)
	}
}

func TestNoWaitEstimateWithoutTimeout(t *testing.T) {
	clk := testwait.NewClock()
	q := New(Config{Slots: 1, MaxQueue: 100, Now: clk.Now})
	for range minHoldSamples {
		tk := mustAcquire(t, q, "a")
		clk.Advance(time.Hour)
		tk.Release()
	}
	holder := mustAcquire(t, q, "a")
	out := make(chan outcome, 3)
	enqueueAll(t, q, []string{"a", "a", "a"}, out) // would each be refused with any Timeout
	if got := grantOrder(t, holder, 3, out); strings.Join(got, " ") != "a0 a1 a2" {
		t.Fatalf("grant order %v", got)
	}
}

func TestRetryAfterHints(t *testing.T) {
	clk := testwait.NewClock()
	q := New(Config{Slots: 2, MaxQueue: 0, Now: clk.Now})
	for range minHoldSamples {
		tk := mustAcquire(t, q, "a")
		clk.Advance(10 * time.Second)
		tk.Release()
	}
	a, b := mustAcquire(t, q, "a"), mustAcquire(t, q, "b")
	defer a.Release()
	defer b.Release()
	_, err := q.Acquire(context.Background(), "c")
	re := mustReject(t, err, ErrSaturated)
	if re.RetryAfter != 5*time.Second {
		t.Fatalf("RetryAfter = %v, want 5s: a mean hold of 10s over 2 slots", re.RetryAfter)
	}
}
