package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// fakeFeeds are peers' feeds as a Subscriber opens them: each open makes
// a pipe the test writes frames into.
type fakeFeeds struct {
	mu      sync.Mutex
	peers   []Peer
	opens   map[string]int
	streams map[string]*io.PipeWriter // the latest stream of each peer
	refuse  map[string]error
	errs    map[string][]error
}

func newFakeFeeds(ids ...string) *fakeFeeds {
	f := &fakeFeeds{opens: map[string]int{}, streams: map[string]*io.PipeWriter{}, refuse: map[string]error{},
		errs: map[string][]error{}}
	f.setPeers(ids...)
	return f
}

func (f *fakeFeeds) setPeers(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = nil
	for _, id := range ids {
		f.peers = append(f.peers, Peer{ID: id, Addr: id + ":7070"})
	}
}

func (f *fakeFeeds) Peers() []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Peer(nil), f.peers...)
}

func (f *fakeFeeds) Open(ctx context.Context, p Peer) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens[p.ID]++
	if err := f.refuse[p.ID]; err != nil {
		return nil, err
	}
	r, w := io.Pipe()
	f.streams[p.ID] = w
	// The stream ends with its context, as an HTTP body does.
	stop := context.AfterFunc(ctx, func() { w.CloseWithError(ctx.Err()) })
	return readCloser{Reader: r, close: func() error { stop(); return r.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// Decode reads frames as JSON reports.
func (f *fakeFeeds) Decode(_ Peer, frame []byte) (Report, error) {
	var r Report
	err := json.Unmarshal(frame, &r)
	return r, err
}

func (f *fakeFeeds) OnError(p Peer, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[p.ID] = append(f.errs[p.ID], err)
}

func (f *fakeFeeds) Opens(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens[id]
}

func (f *fakeFeeds) Errors(id string) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs[id]...)
}

func (f *fakeFeeds) setRefuse(id string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse[id] = err
}

// stream is the latest stream opened to id, once there is one.
func (f *fakeFeeds) stream(t *testing.T, id string, opens int) *io.PipeWriter {
	t.Helper()
	testwait.Until(t, 5*time.Second, func() bool { return f.Opens(id) >= opens },
		func() string { return fmt.Sprintf("open #%d of %s's feed (%d so far)", opens, id, f.Opens(id)) })
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams[id]
}

// send writes frames into w, one line each.
func send(t *testing.T, w io.Writer, frames ...string) {
	t.Helper()
	for _, fr := range frames {
		if _, err := io.WriteString(w, fr+"\n"); err != nil {
			t.Fatalf("write frame: %v", err)
		}
	}
}

func reportJSON(node string, seq uint64, running int) string {
	b, _ := json.Marshal(report(node, seq, running))
	return string(b)
}

// startSubscriber runs a Subscriber over f and v with short waits; stop
// ends it and waits for Run to return.
func startSubscriber(t *testing.T, v *View, f *fakeFeeds, silence time.Duration) (stop func()) {
	t.Helper()
	s := NewSubscriber(SubscriberConfig{
		View: v, Peers: f.Peers, Interval: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Silence: silence, MaxFrame: 256, Open: f.Open, Decode: f.Decode, OnError: f.OnError,
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); s.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-ran }) }
	t.Cleanup(stop)
	return stop
}

func waitRunning(t *testing.T, v *View, node string, want int) {
	t.Helper()
	testwait.Until(t, 5*time.Second, func() bool { return v.Load(node, "m:1").Running == want },
		func() string { return fmt.Sprintf("%s running %d, have %+v", node, want, v.Load(node, "m:1")) })
}

func TestSubscriberDefaults(t *testing.T) {
	v := NewView(ViewConfig{DownAfter: 7 * time.Second})
	s := NewSubscriber(SubscriberConfig{View: v})
	c := s.cfg
	if c.Interval != DefaultPeersInterval || c.MaxBackoff != DefaultMaxBackoff || c.Silence != 7*time.Second ||
		c.OpenTimeout != DefaultOpenTimeout || c.MaxFrame != DefaultMaxFrame {
		t.Errorf("defaults: %+v", c)
	}
}

func TestSubscriberFeedsViewFromEachFrame(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a", "b")
	startSubscriber(t, v, f, time.Minute)
	send(t, f.stream(t, "a", 1), reportJSON("a", 1, 1))
	send(t, f.stream(t, "b", 1), reportJSON("b", 1, 3))
	waitRunning(t, v, "a", 1)
	waitRunning(t, v, "b", 3)
	send(t, f.stream(t, "a", 1), reportJSON("a", 2, 2), reportJSON("a", 3, 4))
	waitRunning(t, v, "a", 4)
	if h := v.Health("a"); h != Fresh {
		t.Errorf("a is %v", h)
	}
	if n := f.Opens("a"); n != 1 {
		t.Errorf("a's feed opened %d times, want once: it stays open", n)
	}
}

func TestSubscriberRefusesAnotherNodesReport(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	startSubscriber(t, v, f, time.Minute)
	w := f.stream(t, "a", 1)
	send(t, w, reportJSON("a", 1, 1))
	waitRunning(t, v, "a", 1)
	// The frame is refused and the feed closed (the write may fail).
	_, _ = io.WriteString(w, reportJSON("b", 2, 9)+"\n")
	f.stream(t, "a", 2)
	if l := v.Load("a", "m:1"); l.Running != 1 {
		t.Errorf("a's load after b's report: %+v", l)
	}
	if l := v.Load("b", "m:1"); l.Running != 0 {
		t.Errorf("b's report reached the view: %+v", l)
	}
}

func TestSubscriberFollowsPeersJoiningAndLeaving(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	startSubscriber(t, v, f, time.Minute)
	send(t, f.stream(t, "a", 1), reportJSON("a", 1, 1))
	waitRunning(t, v, "a", 1)

	f.setPeers("a", "b")
	send(t, f.stream(t, "b", 1), reportJSON("b", 1, 2))
	waitRunning(t, v, "b", 2)

	aFeed := f.stream(t, "a", 1)
	f.setPeers("b")
	// a's feed is closed: writing to it fails once the reader is gone
	// (the probe, a's first report again, changes nothing if read).
	testwait.For(t, 5*time.Second, "a's feed closed", func() bool {
		_, err := io.WriteString(aFeed, reportJSON("a", 1, 1)+"\n")
		return err != nil
	})
	testwait.For(t, 5*time.Second, "a dropped from the view", func() bool { return v.Load("a", "m:1").Running == 0 })
	if n := f.Opens("a"); n != 1 {
		t.Errorf("a's feed opened %d times after a left", n)
	}
}

func TestSubscriberReopensAfterAPeerRestarts(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	startSubscriber(t, v, f, time.Minute)
	w := f.stream(t, "a", 1)
	send(t, w, reportJSON("a", 40, 1))
	waitRunning(t, v, "a", 1)
	w.Close() // the peer went away
	// The restarted peer counts from 1 again.
	send(t, f.stream(t, "a", 2), reportJSON("a", 1, 5))
	waitRunning(t, v, "a", 5)
	if errs := f.Errors("a"); len(errs) != 0 {
		t.Errorf("a feed that worked and was opened again at once was reported failing: %v", errs)
	}
}

func TestSubscriberMarksABrokenFeedUnknownAtOnce(t *testing.T) {
	c := testwait.NewClock()
	v := NewView(ViewConfig{StaleAfter: time.Hour, DownAfter: 2 * time.Hour, Now: c.Now})
	f := newFakeFeeds("a")
	startSubscriber(t, v, f, time.Minute)
	w := f.stream(t, "a", 1)
	send(t, w, reportJSON("a", 1, 1))
	waitRunning(t, v, "a", 1)
	f.setRefuse("a", errors.New("connection refused"))
	w.Close()
	testwait.For(t, 5*time.Second, "a Unknown once its feed broke", func() bool { return v.Health("a") == Unknown })
	if l := v.Load("a", "m:1"); l.Running != 1 {
		t.Errorf("the last report should still be there: %+v", l)
	}
	c.Advance(2 * time.Hour)
	if h := v.Health("a"); h != Unhealthy {
		t.Errorf("a is %v DownAfter after its last report, want unhealthy", h)
	}
	f.setRefuse("a", nil)
	c.Advance(-2 * time.Hour)
	send(t, f.stream(t, "a", f.Opens("a")+1), reportJSON("a", 2, 3))
	waitRunning(t, v, "a", 3)
	if h := v.Health("a"); h != Fresh {
		t.Errorf("a is %v after a new report", h)
	}
}

func TestSubscriberReopensASilentFeed(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	startSubscriber(t, v, f, 50*time.Millisecond)
	send(t, f.stream(t, "a", 1), reportJSON("a", 1, 1))
	// Nothing more: the feed is closed and opened again.
	send(t, f.stream(t, "a", 2), reportJSON("a", 2, 2))
	waitRunning(t, v, "a", 2)
}

func TestSubscriberKeepsAFeedThatSpeaks(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	const silence = time.Second
	startSubscriber(t, v, f, silence)
	w := f.stream(t, "a", 1)
	// Frames far more often than the silence bound, for longer than it:
	// the feed stays open.
	start := time.Now()
	for seq := uint64(1); time.Since(start) < 2*silence+silence/2; seq++ {
		send(t, w, reportJSON("a", seq, 1))
		time.Sleep(silence / 50)
	}
	if n := f.Opens("a"); n != 1 {
		t.Fatalf("a feed sending every %v was opened %d times with a silence bound of %v", silence/50, n, silence)
	}
}

func TestSubscriberReportsAFailingPeerOnce(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	refused := errors.New("connection refused")
	f.setRefuse("a", refused)
	startSubscriber(t, v, f, time.Minute)
	testwait.For(t, 5*time.Second, "several opens", func() bool { return f.Opens("a") >= 5 })
	if errs := f.Errors("a"); len(errs) != 1 || !errors.Is(errs[0], refused) {
		t.Fatalf("errors %v, want the refusal once", errs)
	}
	f.setRefuse("a", nil)
	send(t, f.stream(t, "a", f.Opens("a")+1), reportJSON("a", 1, 1))
	waitRunning(t, v, "a", 1)
	// It fails again: that is news.
	f.setRefuse("a", refused)
	f.stream(t, "a", 1).Close()
	testwait.For(t, 5*time.Second, "a second error", func() bool { return len(f.Errors("a")) == 2 })
}

func TestSubscriberBoundsFrames(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a")
	startSubscriber(t, v, f, time.Minute) // MaxFrame 256
	w := f.stream(t, "a", 1)
	_, _ = io.WriteString(w, strings.Repeat("x", 300)+"\n")
	send(t, f.stream(t, "a", 2), reportJSON("a", 1, 1))
	waitRunning(t, v, "a", 1)
}

func TestSubscriberStopsWithFeedsOpen(t *testing.T) {
	v := NewView(ViewConfig{})
	f := newFakeFeeds("a", "b")
	stop := startSubscriber(t, v, f, time.Minute)
	f.stream(t, "a", 1)
	f.stream(t, "b", 1)
	stop() // returns once both watches have (goleak checks the rest)
}

func TestFrameReader(t *testing.T) {
	long := strings.Repeat("y", 3*frameBuffer)
	cases := []struct {
		name   string
		in     string
		max    int
		frames []string
		err    error
	}{
		{name: "frames", in: "a\nbb\n\nccc\n", max: 10, frames: []string{"a", "bb", "", "ccc"}, err: io.EOF},
		{name: "a frame longer than the buffer", in: long + "\nz\n", max: 4 * frameBuffer, frames: []string{long, "z"}, err: io.EOF},
		{name: "exactly max", in: "abcd\n", max: 4, frames: []string{"abcd"}, err: io.EOF},
		{name: "past max", in: "abcde\n", max: 4, err: ErrFrameTooLarge},
		{name: "past max, longer than the buffer", in: long + "\n", max: 2 * frameBuffer, err: ErrFrameTooLarge},
		{name: "cut by the end", in: "a\nbc", max: 10, frames: []string{"a"}, err: io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newFrameReader(bufio.NewReader(strings.NewReader(tc.in)), tc.max)
			var got []string
			var err error
			for {
				var fr []byte
				if fr, err = r.next(); err != nil {
					break
				}
				got = append(got, string(fr))
			}
			if !errors.Is(err, tc.err) || strings.Join(got, "|") != strings.Join(tc.frames, "|") {
				t.Errorf("frames %q, err %v; want %q, %v", got, err, tc.frames, tc.err)
			}
		})
	}
}
