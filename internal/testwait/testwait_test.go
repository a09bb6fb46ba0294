package testwait

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestForWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 5 {
			n.Add(1)
		}
	}()
	For(t, 5*time.Second, "five", func() bool { return n.Load() == 5 })
}

// fatalRecorder keeps what a helper reports and stops its goroutine, as
// testing.T's Fatalf does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUntilFailsWithTheLastStateAfterTheTimeout(t *testing.T) {
	var polls atomic.Int32
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(r, 30*time.Millisecond, func() bool { polls.Add(1); return false },
			func() string { return fmt.Sprintf("polled %d times", polls.Load()) })
	}()
	<-done
	if !strings.Contains(r.msg, "timed out after 30ms waiting for polled") {
		t.Fatalf("failure message %q", r.msg)
	}
	if polls.Load() < 2 {
		t.Fatalf("polled %d times in 30ms", polls.Load())
	}
}

func TestClockMovesOnlyWhenTold(t *testing.T) {
	c := NewClock()
	start := c.Now()
	if !c.Now().Equal(start) {
		t.Fatal("the clock moved by itself")
	}
	c.Advance(3 * time.Second)
	if got := c.Now().Sub(start); got != 3*time.Second {
		t.Fatalf("advanced by %v, want 3s", got)
	}
}
