package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Errors of a peer's feed.
var (
	// ErrWrongNode: a report whose Node is not the peer it came from.
	ErrWrongNode = errors.New("load: report from the wrong node")
	// ErrFrameTooLarge: a frame longer than SubscriberConfig.MaxFrame.
	ErrFrameTooLarge = errors.New("load: frame too large")
	// ErrSilent: a feed that sent nothing for SubscriberConfig.Silence.
	ErrSilent = errors.New("load: the peer's feed went silent")
)

// Subscriber defaults.
const (
	// DefaultMaxFrame bounds one frame of a peer's feed: a report, up to
	// the publisher's 1024 latest prefix keys and its quota usage of some
	// thirty thousand keys.
	DefaultMaxFrame = 4 << 20
	// DefaultMaxBackoff bounds the wait before a failed feed is opened
	// again.
	DefaultMaxBackoff = time.Second
	// DefaultOpenTimeout bounds opening a feed: the connection, its TLS
	// handshake and the answer's headers.
	DefaultOpenTimeout = 10 * time.Second
)

// Peer is one node to watch.
type Peer struct {
	ID   string
	Addr string
}

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// View receives the reports.
	View *View
	// Peers lists the peers to watch; it is called every Interval.
	Peers func() []Peer
	// Interval is how often the peer list is read, and the first wait
	// before a failed feed is opened again (0: DefaultPeersInterval).
	Interval time.Duration
	// MaxBackoff bounds that wait as it doubles (0: DefaultMaxBackoff).
	MaxBackoff time.Duration
	// Silence: a feed that sent nothing for this long is closed and
	// opened again (0: the View's DownAfter). It must exceed the
	// publisher's keepalive.
	Silence time.Duration
	// OpenTimeout bounds opening a feed (0: DefaultOpenTimeout).
	OpenTimeout time.Duration
	// MaxFrame bounds one frame in bytes (0: DefaultMaxFrame).
	MaxFrame int
	// Open opens a peer's feed: a stream of frames, one per line.
	Open func(ctx context.Context, p Peer) (io.ReadCloser, error)
	// Decode reads one frame from p (without its newline) and returns
	// its report; it may take in what else rides with it. It must not
	// keep frame.
	Decode func(p Peer, frame []byte) (Report, error)
	// OnError, if set, is told when a peer's feed starts failing: once
	// per change from working to failing, not on every failed attempt.
	OnError func(p Peer, err error)
}

// Subscriber keeps a View fed with the reports its peers push: it holds
// one feed open to each peer, opens feeds to peers that join, closes
// those of peers that leave, and opens a failed or silent feed again
// after a backoff.
type Subscriber struct {
	cfg SubscriberConfig

	// listed is what Peers returned last (only Run's goroutine uses it).
	listed []Peer

	mu      sync.Mutex
	current map[string]*feedState // the peers listed last, by ID
}

// feedState is the watch of one peer.
type feedState struct {
	peer   Peer
	cancel context.CancelFunc
}

// NewSubscriber returns a Subscriber; Run starts it.
func NewSubscriber(cfg SubscriberConfig) *Subscriber {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPeersInterval
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Silence <= 0 {
		cfg.Silence = cfg.View.downAfter
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	return &Subscriber{cfg: cfg, current: map[string]*feedState{}}
}

// Run watches the peers until ctx ends, and returns once every watch has.
func (s *Subscriber) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.sync(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync tracks the listed peers in the View, starts a watch of each new
// one (or one whose address changed) and ends those of peers gone.
func (s *Subscriber) sync(ctx context.Context, wg *sync.WaitGroup) {
	peers := s.cfg.Peers()
	if slices.Equal(peers, s.listed) && ctx.Err() == nil {
		return // nothing to do, the common case: spare the maps
	}
	s.listed = peers
	listed := map[string]Peer{}
	var ids []string
	for _, p := range peers {
		if _, dup := listed[p.ID]; p.ID == "" || dup {
			continue
		}
		listed[p.ID] = p
		ids = append(ids, p.ID)
	}

	// Track under s.mu, so that a frame of a peer just dropped cannot
	// bring its report back into the View.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.View.Track(ids)
	for id, fs := range s.current {
		if p, ok := listed[id]; !ok || p != fs.peer || ctx.Err() != nil {
			fs.cancel()
			delete(s.current, id)
		}
	}
	if ctx.Err() != nil {
		return
	}
	for id, p := range listed {
		if _, ok := s.current[id]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		fs := &feedState{peer: p, cancel: cancel}
		s.current[id] = fs
		wg.Go(func() { s.watch(wctx, fs) })
	}
}

// watch keeps fs's peer's feed open until ctx ends.
func (s *Subscriber) watch(ctx context.Context, fs *feedState) {
	wait, failing := s.cfg.Interval, false
	for {
		got, err := s.follow(ctx, fs)
		if ctx.Err() != nil {
			return
		}
		s.lost(fs)
		if got {
			wait = s.cfg.Interval // it worked for a while: start over
		}
		if !got && !failing && s.cfg.OnError != nil {
			s.cfg.OnError(fs.peer, err)
		}
		failing = !got
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, s.cfg.MaxBackoff)
	}
}

// follow opens the peer's feed and takes in its frames until it fails;
// got says whether any frame was taken in.
func (s *Subscriber) follow(ctx context.Context, fs *feedState) (got bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	opening := time.AfterFunc(s.cfg.OpenTimeout, func() { cancel(errOpenTimeout) })
	body, err := s.cfg.Open(ctx, fs.peer)
	opening.Stop()
	if err != nil {
		return false, causeOr(ctx, err)
	}
	defer body.Close()
	quiet := time.AfterFunc(s.cfg.Silence, func() { cancel(ErrSilent) })
	defer quiet.Stop()
	r := newFrameReader(body, s.cfg.MaxFrame)
	for {
		frame, err := r.next()
		if err != nil {
			return got, causeOr(ctx, err)
		}
		quiet.Reset(s.cfg.Silence)
		if err := s.take(fs, frame); err != nil {
			return got, err
		}
		got = true
	}
}

// take decodes one frame of fs's peer into the View.
func (s *Subscriber) take(fs *feedState, frame []byte) error {
	rep, err := s.cfg.Decode(fs.peer, frame)
	if err != nil {
		return fmt.Errorf("load from %s: %w", fs.peer.ID, err)
	}
	if rep.Node != fs.peer.ID {
		return fmt.Errorf("%w: watching %q at %s, got %q", ErrWrongNode, fs.peer.ID, fs.peer.Addr, rep.Node)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[fs.peer.ID] == fs {
		s.cfg.View.Update(rep)
	}
	return nil
}

// errOpenTimeout: a feed that took longer than OpenTimeout to open.
var errOpenTimeout = errors.New("load: opening the peer's feed timed out")

// lost marks fs's peer's report Unknown in the View, unless the peer was
// dropped meanwhile.
func (s *Subscriber) lost(fs *feedState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[fs.peer.ID] == fs {
		s.cfg.View.Lost(fs.peer.ID)
	}
}

// causeOr is why ctx ended (a silent feed), or else err.
func causeOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// frameReader reads newline-ended frames of at most max bytes.
type frameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// frameBuffer is the read buffer of one feed; longer frames are put
// together in a buffer of their own.
const frameBuffer = 4 << 10

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, frameBuffer), max: max}
}

// next returns the next frame without its newline, valid until the next
// call. A frame cut by the end of the stream is an error.
func (f *frameReader) next() ([]byte, error) {
	if cap(f.buf) > 16*frameBuffer {
		f.buf = nil // do not hold on to one large frame's memory
	}
	f.buf = f.buf[:0]
	for {
		chunk, err := f.r.ReadSlice('\n')
		if len(f.buf)+len(chunk) > f.max+1 {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, f.max)
		}
		switch {
		case err == nil && len(f.buf) == 0:
			return chunk[:len(chunk)-1], nil
		case err == nil:
			f.buf = append(f.buf, chunk...)
			return f.buf[:len(f.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			f.buf = append(f.buf, chunk...)
		case errors.Is(err, io.EOF) && len(f.buf)+len(chunk) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
