package admit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sovra/sovra/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// outcome is what an Acquire run by spawn returned.
type outcome struct {
	tag string
	t   *Ticket
	err error
}

// spawn runs Acquire in a goroutine and sends its outcome to out, which
// must have room for it.
func spawn(ctx context.Context, q *Queue, key, tag string, out chan<- outcome) {
	go func() {
		t, err := q.Acquire(ctx, key)
		out <- outcome{tag: tag, t: t, err: err}
	}()
}

// enqueueAll spawns one waiter per key, in order, each queued before the
// next starts, so that their arrival order is known. A waiter's tag is its
// key and its index among that key's waiters of this call: a0, a1, b0.
func enqueueAll(t *testing.T, q *Queue, keys []string, out chan<- outcome) {
	t.Helper()
	seen := make(map[string]int)
	for _, key := range keys {
		tag := fmt.Sprintf("%s%d", key, seen[key])
		seen[key]++
		before := q.Stats().Queued
		spawn(context.Background(), q, key, tag, out)
		testwait.For(t, 10*time.Second, "waiter "+tag+" queued", func() bool { return q.Stats().Queued == before+1 })
	}
}

// recv returns the next outcome, failing the test after a deadline.
func recv(t *testing.T, out <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an Acquire to return")
		return outcome{}
	}
}

// mustAcquire takes a slot that must be free.
func mustAcquire(t *testing.T, q *Queue, key string) *Ticket {
	t.Helper()
	tk, err := q.Acquire(context.Background(), key)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", key, err)
	}
	return tk
}

// mustReject checks that err is a *RejectError for reason.
func mustReject(t *testing.T, err error, reason error) *RejectError {
	t.Helper()
	var re *RejectError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RejectError", err, err)
	}
	if !errors.Is(err, reason) {
		t.Fatalf("error %q: reason %v, want %v", err, re.Reason, reason)
	}
	if re.RetryAfter < time.Second {
		t.Errorf("RetryAfter %v, want at least 1s", re.RetryAfter)
	}
	return re
}

// grantOrder releases holder and then serves every remaining waiter one at
// a time (the queue must have one slot), returning their tags in the order
// they got the slot.
func grantOrder(t *testing.T, holder *Ticket, n int, out <-chan outcome) []string {
	t.Helper()
	holder.Release()
	var order []string
	for range n {
		o := recv(t, out)
		if o.err != nil {
			t.Fatalf("waiter %s: %v", o.tag, o.err)
		}
		order = append(order, o.tag)
		o.t.Release()
	}
	return order
}

func wantStats(t *testing.T, q *Queue, want Stats) {
	t.Helper()
	if got := q.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}
