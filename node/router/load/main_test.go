package load

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sovra/sovra/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a clock that moves only when told.
type fakeClock = testwait.Clock

func newFakeClock() *fakeClock { return testwait.NewClock() }

// eventually waits until cond holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, cond)
}
