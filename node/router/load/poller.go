package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrWrongNode is the error for a report whose Node is not the peer it
// was fetched from.
var ErrWrongNode = errors.New("load: report from the wrong node")

// minTimeout is the least default fetch timeout.
const minTimeout = 500 * time.Millisecond

// Peer is one node to fetch reports from.
type Peer struct {
	ID   string
	Addr string
}

// Fetch gets one peer's current report.
type Fetch func(ctx context.Context, p Peer) (Report, error)

// PollerConfig configures a Poller.
type PollerConfig struct {
	// View receives the reports.
	View *View
	// Interval is the time between two rounds (0: DefaultInterval).
	Interval time.Duration
	// Timeout bounds one fetch (0: the larger of 5*Interval and 500ms).
	Timeout time.Duration
	// Peers lists the peers to poll; it is called once per round.
	Peers func() []Peer
	// Fetch gets a peer's report.
	Fetch Fetch
	// OnError, if set, is told when a peer starts failing: once per change
	// from ok to failing, not on every failed fetch.
	OnError func(p Peer, err error)
}

// Poller keeps a View fed with its peers' reports.
type Poller struct {
	cfg PollerConfig
}

// NewPoller returns a Poller; Run starts it.
func NewPoller(cfg PollerConfig) *Poller {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = max(5*cfg.Interval, minTimeout)
	}
	return &Poller{cfg: cfg}
}

// Run polls every Interval until ctx ends: it tracks the peers that Peers
// lists in the View and fetches each one's report, all at once, never two
// at a time for one peer. It returns once its fetches have returned.
func (p *Poller) Run(ctx context.Context) {
	r := &round{Poller: p, inFlight: map[string]bool{}, failing: map[string]bool{}}
	defer r.wg.Wait()

	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		r.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round is the state of one Run.
type round struct {
	*Poller
	wg sync.WaitGroup

	mu       sync.Mutex
	current  map[string]Peer // the peers of the last round, by ID
	inFlight map[string]bool // peers whose fetch has not returned
	failing  map[string]bool // peers whose last fetch failed
}

// poll runs one round: it tracks the listed peers and starts a fetch for
// each one that has none in flight.
func (r *round) poll(ctx context.Context) {
	peers := r.cfg.Peers()
	current := make(map[string]Peer, len(peers))
	ids := make([]string, 0, len(peers))
	for _, pr := range peers {
		if _, dup := current[pr.ID]; pr.ID == "" || dup {
			continue
		}
		current[pr.ID] = pr
		ids = append(ids, pr.ID)
	}

	// Track under r.mu, so that a fetch of a peer just dropped cannot
	// bring its report back into the View.
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.View.Track(ids)
	r.current = current
	for id := range r.failing {
		if _, ok := current[id]; !ok {
			delete(r.failing, id)
		}
	}
	for _, pr := range current {
		if r.inFlight[pr.ID] || ctx.Err() != nil {
			continue
		}
		r.inFlight[pr.ID] = true
		r.wg.Go(func() { r.fetch(ctx, pr) })
	}
}

// fetch gets pr's report into the View and records the outcome.
func (r *round) fetch(ctx context.Context, pr Peer) {
	fctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	rep, err := r.cfg.Fetch(fctx, pr)
	cancel()
	if err == nil && rep.Node != pr.ID {
		err = fmt.Errorf("%w: fetched %q from %s, got %q", ErrWrongNode, pr.ID, pr.Addr, rep.Node)
	}

	r.mu.Lock()
	delete(r.inFlight, pr.ID)
	if ctx.Err() != nil || r.current[pr.ID] != pr {
		r.mu.Unlock()
		return // stopping, or the peer left (or moved) meanwhile
	}
	wasFailing := r.failing[pr.ID]
	if err == nil {
		delete(r.failing, pr.ID)
		r.cfg.View.Update(rep)
	} else {
		r.failing[pr.ID] = true
	}
	r.mu.Unlock()

	if err != nil && !wasFailing && r.cfg.OnError != nil {
		r.cfg.OnError(pr, err)
	}
}
