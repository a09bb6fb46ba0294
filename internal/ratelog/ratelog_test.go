package ratelog_test

import (
	"testing"
	"time"

	"github.com/sovra/sovra/internal/ratelog"
	"github.com/sovra/sovra/internal/testwait"
)

func TestLimiterLogsOnceThenASummary(t *testing.T) {
	clock := testwait.NewClock()
	l := &ratelog.Limiter{Every: 30 * time.Second, Now: clock.Now}
	type step struct {
		advance    time.Duration
		key        string
		ok         bool
		suppressed int
	}
	steps := []step{
		{0, "a", true, 0},
		{time.Second, "a", false, 0},
		{time.Second, "b", true, 0}, // another key is its own
		{time.Second, "a", false, 0},
		{26 * time.Second, "a", false, 0}, // 29s after the first line
		{time.Second, "a", true, 3},       // 30s: a summary of the three left out
		{time.Second, "a", false, 0},
		{30 * time.Second, "a", true, 1},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		ok, n := l.Allow(s.key)
		if ok != s.ok || n != s.suppressed {
			t.Fatalf("step %d (%s): Allow = %v, %d; want %v, %d", i, s.key, ok, n, s.ok, s.suppressed)
		}
	}
	l.Reset("a")
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a key that was reset is not logged at once")
	}
}
