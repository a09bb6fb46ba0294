package load

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrFeedClosed is what Watch returns once the Feed has stopped.
var ErrFeedClosed = errors.New("load: the feed has stopped")

// Feed defaults.
const (
	// DefaultKeepalive is how long a Feed stays silent when nothing
	// changes: it then sends its unchanged report again, so that a
	// watcher can tell a quiet peer from a gone one. Half of
	// DefaultStaleAfter: one keepalive may come late, not two.
	DefaultKeepalive = time.Second
	// DefaultFrameBudget is how many frames a second a node should take
	// in from all its peers together: a Feed watched by n peers sends at
	// most one frame every n/DefaultFrameBudget seconds (never more often
	// than Interval, always within Keepalive). Up to 20 peers, that is
	// every Interval; at 200, every second.
	DefaultFrameBudget = 200
)

// Frame is one message of a Feed: the node's report and what rides with
// it, encoded once for every watcher.
type Frame struct {
	// Data is the frame as sent.
	Data []byte
	// Same is the frame's content less what changes every time one is
	// built (its sequence number): two frames with equal Same say the
	// same thing.
	Same []byte
	// After and Next: the frame carries the prefix keys the node
	// published after sequence number After, up to Next.
	After, Next uint64
}

// FeedConfig configures a Feed.
type FeedConfig struct {
	// Build makes the node's current frame, with the prefix keys
	// published after sequence number after.
	Build func(after uint64) Frame
	// Interval is how often Run looks for a change (0: DefaultInterval):
	// a change reaches watchers within one Interval, and no watcher gets
	// more than one frame per Interval.
	Interval time.Duration
	// Keepalive: an unchanged report is sent again after this long
	// (0: DefaultKeepalive).
	Keepalive time.Duration
	// FrameBudget paces the Feed by its watchers (0: DefaultFrameBudget).
	FrameBudget float64
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Feed publishes this node's load to the peers that watch it: every
// Interval it builds the current frame and, when that says something the
// last one did not, or Keepalive has passed, hands it to every watcher.
// One frame is encoded for all of them; a watcher that falls behind skips
// to the latest frame (with the prefix keys it missed). It is safe for
// concurrent use.
type Feed struct {
	cfg FeedConfig

	mu       sync.Mutex
	cur      Frame
	sent     time.Time     // when cur was published
	changed  chan struct{} // closed when a frame replaces cur
	watchers map[string]*watcher
	closed   bool

	// kick wakes Run to look for a change before its next tick.
	kick chan struct{}
	// watching counts the watchers (Kick reads it without the lock);
	// kicked is set from a kick sent until Run looks at the load again,
	// so that the changes in between do not wake Run each time; kicks
	// counts the kicks Run took.
	watching atomic.Int32
	kicked   atomic.Bool
	kicks    atomic.Int64
}

// watcher is one peer's watch.
type watcher struct{ cancel context.CancelCauseFunc }

// NewFeed returns a Feed; Run publishes.
func NewFeed(cfg FeedConfig) *Feed {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.FrameBudget <= 0 {
		cfg.FrameBudget = DefaultFrameBudget
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Feed{cfg: cfg, changed: make(chan struct{}), watchers: map[string]*watcher{}, kick: make(chan struct{}, 1)}
}

// Kick tells Run that the load changed: it looks at once rather than at
// its next tick, so a change reaches the watchers within a round trip
// when the pace allows (a frame went out at least a pace ago), and
// within an Interval otherwise. It never blocks, and it is cheap when
// it has nothing to do: with no watcher, or a kick already pending (a
// request's start and end each kick; waking Run for each was a thread
// hand-off per request).
func (f *Feed) Kick() {
	if f.watching.Load() == 0 || f.kicked.Swap(true) {
		return
	}
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run publishes every Interval, and when kicked, until ctx ends, then
// ends every watch and refuses new ones. With no watcher it builds no
// frame: a new watch starts from a frame of its own.
func (f *Feed) Run(ctx context.Context) {
	defer f.close()
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	var kicked bool
	var retry <-chan time.Time // a kick the pace held back looks again then
	for {
		if f.watching.Load() > 0 && !f.Tick() && kicked && retry == nil {
			if d := f.untilPace(); d > 0 {
				retry = time.After(d)
			}
		}
		if retry == nil {
			f.kicked.Store(false) // the next change kicks again
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			kicked = false
		case <-f.kick:
			kicked = true
			f.kicks.Add(1)
		case <-retry:
			retry, kicked = nil, false
		}
	}
}

// untilPace is how long until the pace lets the next frame out.
func (f *Feed) untilPace() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur.Same == nil {
		return 0
	}
	return f.sent.Add(f.pace()).Sub(f.cfg.Now())
}

// Tick publishes the current frame when it differs from the last one
// published and the pace allows, or the last one is Keepalive old. It
// reports whether it published.
func (f *Feed) Tick() bool {
	f.mu.Lock()
	after, last, sent, pace := f.cur.Next, f.cur.Same, f.sent, f.pace()
	f.mu.Unlock()
	now := f.cfg.Now()
	if last != nil && now.Sub(sent) < pace {
		return false
	}
	fr := f.cfg.Build(after)
	if last != nil && bytes.Equal(fr.Same, last) && now.Sub(sent) < f.cfg.Keepalive {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur, f.sent = fr, now
	close(f.changed)
	f.changed = make(chan struct{})
	return true
}

// pace is the least time between two frames: Interval, or longer when so
// many peers watch that each would take in more than FrameBudget frames
// a second, but never beyond Keepalive. f.mu is held.
func (f *Feed) pace() time.Duration {
	d := time.Duration(float64(len(f.watchers)) / f.cfg.FrameBudget * float64(time.Second))
	return min(max(d, f.cfg.Interval), f.cfg.Keepalive)
}

// Watch sends peer this node's frames through send until ctx ends, send
// fails or the Feed stops: first a frame with every prefix key the node
// still holds, then each frame published. A newer watch by the same peer
// ends this one. It returns why it ended.
func (f *Feed) Watch(ctx context.Context, peer string, send func([]byte) error) error {
	ctx, done, err := f.register(ctx, peer)
	if err != nil {
		return err
	}
	defer done()

	f.mu.Lock()
	changed := f.changed
	f.mu.Unlock()
	first := f.cfg.Build(0)
	if err := send(first.Data); err != nil {
		return err
	}
	have := first.Next
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-changed:
		}
		f.mu.Lock()
		fr := f.cur
		changed = f.changed
		f.mu.Unlock()
		if fr.After > have {
			// Frames went by while this watcher was sending: rebuild
			// this one with every prefix key the peer has not had.
			fr = f.cfg.Build(have)
		}
		if err := send(fr.Data); err != nil {
			return err
		}
		have = max(have, fr.Next)
	}
}

// errReplaced ends a watch that a newer one by the same peer replaced.
var errReplaced = errors.New("load: a newer watch by the same peer replaced this one")

// register records peer's watch, ending an older one, and returns its
// context and the func that forgets it.
func (f *Feed) register(ctx context.Context, peer string) (context.Context, func(), error) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watcher{cancel: cancel}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		cancel(ErrFeedClosed)
		return nil, nil, ErrFeedClosed
	}
	if old := f.watchers[peer]; old != nil {
		old.cancel(errReplaced)
	}
	f.watchers[peer] = w
	f.watching.Store(int32(len(f.watchers)))
	return ctx, func() {
		f.mu.Lock()
		if f.watchers[peer] == w {
			delete(f.watchers, peer)
		}
		f.watching.Store(int32(len(f.watchers)))
		f.mu.Unlock()
		cancel(nil)
	}, nil
}

// Watchers is how many peers watch this node now.
func (f *Feed) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

// close ends every watch and refuses new ones.
func (f *Feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, w := range f.watchers {
		w.cancel(ErrFeedClosed)
	}
}
