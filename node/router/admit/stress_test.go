package admit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// handOff queues waiters for "a" then "b" behind a holder and releases the
// holder, so that a's waiter is granted the slot but has not yet run.
func handOff(t *testing.T, q *Queue) (a, b *waiter) {
	t.Helper()
	holder := mustAcquire(t, q, "x")
	q.mu.Lock()
	a, errA := q.enqueue("a")
	b, errB := q.enqueue("b")
	q.mu.Unlock()
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	holder.Release()
	if a.state != stateGranted || b.state != stateWaiting {
		t.Fatalf("states after hand-off: a %v, b %v", a.state, b.state)
	}
	return a, b
}

func TestCancelAtHandOffPassesSlotOn(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 4})
	a, b := handOff(t, q)
	err := q.abandon(a, cancelled(context.Canceled))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("abandon = %v, want context.Canceled", err)
	}
	if b.state != stateGranted {
		t.Fatal("the slot given up was not handed to the next waiter")
	}
	wantStats(t, q, Stats{Running: 1, Slots: 1})
	tk, err := q.outcome(b)
	if err != nil {
		t.Fatal(err)
	}
	tk.Release()
	wantStats(t, q, Stats{Slots: 1})
}

func TestCancelAtHandOffReturnsSlotToPool(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 4})
	a, b := handOff(t, q)
	q.abandon(b, cancelled(context.Canceled))
	q.abandon(a, cancelled(context.Canceled))
	wantStats(t, q, Stats{Slots: 1})
}

func TestTimeoutAtHandOffKeepsSlot(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 4, Timeout: time.Second})
	a, b := handOff(t, q)
	tk, err := q.expire(a)
	if err != nil {
		t.Fatalf("expire after the hand-off = %v, want the ticket", err)
	}
	_, err = q.expire(b)
	mustReject(t, err, ErrTimeout)
	wantStats(t, q, Stats{Running: 1, Slots: 1})
	tk.Release()
	wantStats(t, q, Stats{Slots: 1})
}

// TestStress runs many callers over few slots, some giving up at random
// moments, some refused for a full queue or for waiting too long, and checks that the slots bound
// the holders at every moment and that nothing is left over.
func TestStress(t *testing.T) {
	const slots, callers, keys = 4, 400, 6
	q := New(Config{Slots: slots, MaxQueue: 64, Timeout: 5 * time.Millisecond})
	var holders, most, granted, gaveUp, refused, late atomic.Int32
	var wg sync.WaitGroup
	for i := range callers {
		ctx, cancel := context.WithCancel(context.Background())
		if rand.IntN(3) == 0 {
			wg.Go(func() { spin(rand.IntN(200)); cancel() })
		}
		wg.Go(func() {
			defer cancel()
			tk, err := q.Acquire(ctx, fmt.Sprintf("key%d", i%keys))
			switch {
			case errors.Is(err, context.Canceled):
				gaveUp.Add(1)
				return
			case errors.Is(err, ErrKeyOverShare):
				refused.Add(1)
				return
			case errors.Is(err, ErrTimeout), errors.Is(err, ErrWaitTooLong):
				late.Add(1)
				return
			case err != nil:
				t.Errorf("Acquire: %v", err)
				return
			}
			granted.Add(1)
			n := holders.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			spin(rand.IntN(50))
			holders.Add(-1)
			tk.Release()
			if rand.IntN(4) == 0 {
				tk.Release()
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > slots || m < 1 {
		t.Fatalf("%d holders at once with %d slots", m, slots)
	}
	wantStats(t, q, Stats{Slots: slots})
	t.Logf("granted %d, gave up %d, refused %d, late %d, most holders %d",
		granted.Load(), gaveUp.Load(), refused.Load(), late.Load(), most.Load())
	if granted.Load() == 0 {
		t.Fatal("nobody got a slot")
	}
}

// spin yields the processor n times, to let other goroutines move.
func spin(n int) {
	for range n {
		runtime.Gosched()
	}
}
