package energy

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/node/agent"
)

// t0 is the fake clock's start; recorded _t1 files are 15 s after _t0.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

const step = 15 * time.Second

// recorded reads an nvidia-smi output of node/agent/testdata.
func recorded(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "agent", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readings parses a recorded power query.
func readings(t testing.TB, name string) []agent.PowerReading {
	t.Helper()
	rs, err := agent.ParsePower(recorded(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// near reports whether a and b agree to a millijoule.
func near(a, b float64) bool { return math.Abs(a-b) < 1e-3 }

// clock is a fake clock that only moves when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// script answers nvidia-smi calls from recorded outputs, one a call, and
// reports each call on calls.
type script struct {
	t       testing.TB
	mu      sync.Mutex
	outputs []string // file names; "!" fails the call
	calls   chan int
}

func (s *script) run(_ context.Context, _ string, _ ...string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.outputs) == 0 {
		s.t.Error("nvidia-smi called more often than scripted")
		return nil, os.ErrInvalid
	}
	name := s.outputs[0]
	s.outputs = s.outputs[1:]
	if s.calls != nil {
		defer func() { s.calls <- len(s.outputs) }()
	}
	if name == "!" {
		return []byte("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."), errDriver
	}
	return recorded(s.t, name), nil
}

var errDriver = os.ErrPermission
