package load

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// fakeSource is a node's load as a Feed builds frames of it: a state the
// test sets and a log of published prefix keys numbered from 1.
type fakeSource struct {
	mu       sync.Mutex
	state    string
	prefixes []string // prefixes[i] has sequence number i+1
	seq      int      // frames built
}

func (s *fakeSource) set(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
}

func (s *fakeSource) publish(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prefixes = append(s.prefixes, keys...)
}

// build encodes a frame as "seq state [prefixes]".
func (s *fakeSource) build(after uint64) Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	after = min(after, uint64(len(s.prefixes)))
	keys := strings.Join(s.prefixes[after:], ",")
	same := s.state + " [" + keys + "]"
	return Frame{Data: []byte(fmt.Sprintf("%d %s", s.seq, same)), Same: []byte(same),
		After: after, Next: uint64(len(s.prefixes))}
}

func newTestFeed(src *fakeSource, c *testwait.Clock, budget float64) *Feed {
	return NewFeed(FeedConfig{Build: src.build, Interval: 100 * time.Millisecond, Keepalive: time.Second,
		FrameBudget: budget, Now: c.Now})
}

// frameOf is a frame's content without its sequence number.
func frameOf(data string) string {
	_, rest, _ := strings.Cut(data, " ")
	return rest
}

func TestFeedDefaults(t *testing.T) {
	f := NewFeed(FeedConfig{Build: (&fakeSource{}).build})
	if f.cfg.Interval != DefaultInterval || f.cfg.Keepalive != DefaultKeepalive ||
		f.cfg.FrameBudget != DefaultFrameBudget || f.cfg.Now == nil {
		t.Errorf("defaults: %+v", f.cfg)
	}
}

func TestFeedPublishesChangesAndKeepalives(t *testing.T) {
	src, c := &fakeSource{state: "idle"}, testwait.NewClock()
	f := newTestFeed(src, c, 1000)
	steps := []struct {
		name    string
		advance time.Duration
		state   string
		publish bool
	}{
		{name: "first frame", publish: true},
		{name: "nothing changed", advance: 100 * time.Millisecond},
		{name: "a change", advance: 100 * time.Millisecond, state: "busy", publish: true},
		{name: "the same again", advance: 100 * time.Millisecond, state: "busy"},
		{name: "just before the keepalive", advance: 800 * time.Millisecond},
		{name: "keepalive", advance: 100 * time.Millisecond, publish: true},
		{name: "quiet after the keepalive", advance: 100 * time.Millisecond},
	}
	for _, s := range steps {
		c.Advance(s.advance)
		if s.state != "" {
			src.set(s.state)
		}
		if got := f.Tick(); got != s.publish {
			t.Fatalf("%s: published %v, want %v", s.name, got, s.publish)
		}
	}
}

func TestFeedPacesByWatchers(t *testing.T) {
	src, c := &fakeSource{state: "0"}, testwait.NewClock()
	// 10 watchers and a budget of 20 frames a second: one frame every
	// 500ms at most.
	f := newTestFeed(src, c, 20)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range 10 {
		wg.Go(func() { _ = f.Watch(ctx, fmt.Sprint("p", i), func([]byte) error { return nil }) })
	}
	testwait.For(t, 5*time.Second, "ten watchers", func() bool { return f.Watchers() == 10 })

	if !f.Tick() {
		t.Fatal("first frame not published")
	}
	for i := 1; i < 5; i++ {
		c.Advance(100 * time.Millisecond)
		src.set(fmt.Sprint(i))
		if f.Tick() {
			t.Fatalf("a change %v after the last frame was published; the pace is 500ms", time.Duration(i)*100*time.Millisecond)
		}
	}
	c.Advance(100 * time.Millisecond)
	if !f.Tick() {
		t.Fatal("a change 500ms after the last frame was not published")
	}
}

func TestFeedPaceNeverPassesKeepalive(t *testing.T) {
	f := newTestFeed(&fakeSource{}, testwait.NewClock(), 1)
	for i := range 50 {
		f.watchers[fmt.Sprint(i)] = &watcher{cancel: func(error) {}}
	}
	if got := f.pace(); got != f.cfg.Keepalive {
		t.Errorf("pace with 50 watchers and a budget of 1: %v, want the keepalive %v", got, f.cfg.Keepalive)
	}
	clear(f.watchers)
	if got := f.pace(); got != f.cfg.Interval {
		t.Errorf("pace without watchers: %v, want the interval %v", got, f.cfg.Interval)
	}
}

// recorder is one watcher's frames.
type recorder struct {
	mu     sync.Mutex
	frames []string
	block  chan struct{} // when set, send waits for it
}

func (r *recorder) send(b []byte) error {
	r.mu.Lock()
	r.frames = append(r.frames, string(b))
	block := r.block
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.frames...)
}

func (r *recorder) waitFrames(t *testing.T, n int) []string {
	t.Helper()
	testwait.Until(t, 5*time.Second, func() bool { return len(r.got()) >= n },
		func() string { return fmt.Sprintf("%d frames, got %q", n, r.got()) })
	return r.got()
}

func TestFeedWatchSendsEveryPrefixThenEachFrame(t *testing.T) {
	src, c := &fakeSource{state: "idle"}, testwait.NewClock()
	src.publish("k1", "k2")
	f := newTestFeed(src, c, 1000)
	f.Tick()
	var r recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Watch(ctx, "p", r.send) }()
	if got := frameOf(r.waitFrames(t, 1)[0]); got != "idle [k1,k2]" {
		t.Fatalf("first frame %q, want every prefix key", got)
	}
	c.Advance(100 * time.Millisecond)
	src.set("busy")
	src.publish("k3")
	f.Tick()
	if got := frameOf(r.waitFrames(t, 2)[1]); got != "busy [k3]" {
		t.Fatalf("second frame %q, want the change and the new key", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v", err)
	}
}

func TestFeedSlowWatcherGetsTheKeysItMissed(t *testing.T) {
	src, c := &fakeSource{state: "s0"}, testwait.NewClock()
	f := newTestFeed(src, c, 1000)
	f.Tick()
	r := recorder{block: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Watch(ctx, "p", r.send) }()
	r.waitFrames(t, 1) // the watcher is now stuck sending its first frame
	for i, k := range []string{"k1", "k2", "k3"} {
		c.Advance(100 * time.Millisecond)
		src.set(fmt.Sprint("s", i+1))
		src.publish(k)
		if !f.Tick() {
			t.Fatalf("frame %d not published", i+1)
		}
	}
	r.unblock()
	if got := frameOf(r.waitFrames(t, 2)[1]); got != "s3 [k1,k2,k3]" {
		t.Fatalf("after falling behind, frame %q; want the latest state with every key missed", got)
	}
	cancel()
	<-done
}

// unblock lets sends through from now on.
func (r *recorder) unblock() {
	r.mu.Lock()
	block := r.block
	r.block = nil
	r.mu.Unlock()
	close(block)
}

func TestFeedNewerWatchReplacesOlder(t *testing.T) {
	f := newTestFeed(&fakeSource{}, testwait.NewClock(), 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first, second recorder
	done := make(chan error, 1)
	go func() { done <- f.Watch(ctx, "p", first.send) }()
	first.waitFrames(t, 1)
	go func() { _ = f.Watch(ctx, "p", second.send) }()
	select {
	case err := <-done:
		if !errors.Is(err, errReplaced) {
			t.Fatalf("the older watch ended with %v, want errReplaced", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the older watch still runs after a newer one by the same peer")
	}
	second.waitFrames(t, 1)
	if n := f.Watchers(); n != 1 {
		t.Fatalf("%d watchers, want 1", n)
	}
}

func TestFeedStopEndsWatches(t *testing.T) {
	f := newTestFeed(&fakeSource{}, testwait.NewClock(), 1000)
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); f.Run(ctx) }()
	var r recorder
	done := make(chan error, 1)
	go func() { done <- f.Watch(context.Background(), "p", r.send) }()
	r.waitFrames(t, 1)
	stop()
	<-ran
	if err := <-done; !errors.Is(err, ErrFeedClosed) {
		t.Fatalf("watch ended with %v, want ErrFeedClosed", err)
	}
	if err := f.Watch(context.Background(), "q", r.send); !errors.Is(err, ErrFeedClosed) {
		t.Fatalf("a watch after the feed stopped: %v", err)
	}
}

func TestFeedWatchEndsWhenSendFails(t *testing.T) {
	f := newTestFeed(&fakeSource{}, testwait.NewClock(), 1000)
	gone := errors.New("peer gone")
	if err := f.Watch(context.Background(), "p", func([]byte) error { return gone }); !errors.Is(err, gone) {
		t.Fatalf("watch ended with %v", err)
	}
	if n := f.Watchers(); n != 0 {
		t.Fatalf("%d watchers left", n)
	}
}

// TestFeedKickPublishesBeforeTheTick checks that a kicked feed publishes
// a change at once: with an interval of an hour, the watcher gets the
// change only through the kick. A kick within the pace of the last frame
// publishes nothing.
func TestFeedKickPublishesBeforeTheTick(t *testing.T) {
	f, src, c, r := runWatchedFeed(t)
	c.Advance(time.Hour) // a pace has passed since the first frame
	src.set("busy")
	f.Kick()
	if got := frameOf(r.waitFrames(t, 2)[1]); got != "busy []" {
		t.Fatalf("frame after the kick %q, want the change", got)
	}
	src.set("idle")
	f.Kick() // within the pace of the last frame: nothing
	testwait.For(t, 5*time.Second, "the kick to be taken", func() bool { return len(f.kick) == 0 })
	f.Kick() // the first kick was taken and looked at: Tick ran
	testwait.For(t, 5*time.Second, "the second kick to be taken", func() bool { return len(f.kick) == 0 })
	if n := len(r.got()); n != 2 {
		t.Fatalf("%d frames after kicks within the pace, want 2", n)
	}
}

// TestFeedKicksWakeRunOncePerPace: a kick with no watcher sends nothing,
// and while the pace holds a frame back the kicks after the first do not
// wake Run again (a request's start and end each kick).
func TestFeedKicksWakeRunOncePerPace(t *testing.T) {
	f := NewFeed(FeedConfig{Build: (&fakeSource{}).build})
	f.Kick()
	if len(f.kick) != 0 {
		t.Fatal("a kick with no watcher was sent")
	}
	f, src, _, _ := runWatchedFeed(t)
	for i := range 20 { // all within the pace of the first frame
		src.set(fmt.Sprint("busy ", i))
		f.Kick()
		testwait.For(t, 5*time.Second, "the kick to be taken", func() bool { return len(f.kick) == 0 })
	}
	testwait.For(t, 5*time.Second, "Run to take a kick", func() bool { return f.kicks.Load() > 0 })
	if n := f.kicks.Load(); n != 1 {
		t.Fatalf("Run woke for %d of 20 kicks within the pace, want 1", n)
	}
}

// runWatchedFeed runs a feed with an hour's interval (so that only kicks
// publish) and one watcher, which has had the first frame.
func runWatchedFeed(t *testing.T) (*Feed, *fakeSource, *testwait.Clock, *recorder) {
	t.Helper()
	src, c := &fakeSource{state: "idle"}, testwait.NewClock()
	f := NewFeed(FeedConfig{Build: src.build, Interval: time.Hour, Keepalive: 2 * time.Hour, FrameBudget: 1000, Now: c.Now})
	f.Tick() // the first frame, so that Run's first tick has nothing new
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); f.Run(ctx) }()
	t.Cleanup(func() { stop(); <-ran })
	r := &recorder{}
	go func() { _ = f.Watch(ctx, "p", r.send) }()
	r.waitFrames(t, 1)
	return f, src, c, r
}
