package testwait

import (
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
