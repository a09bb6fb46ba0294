package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
)

// task is one pull-and-load or load of a model, on a goroutine of its own.
type task struct {
	cancel context.CancelFunc
	done   chan struct{}
	warm   bool // the model was running: the task only pins it again
	err    error
	// stopped is set by the loop when it cancels the task.
	stopped bool

	mu    sync.Mutex
	phase state.PlacementState
	pull  pullStatus
}

func (t *task) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *task) get() (state.PlacementState, pullStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.phase, t.pull
}

func (t *task) set(phase state.PlacementState, pull pullStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.phase, t.pull = phase, pull
}

// start runs a task for the model called name.
func (l *loop) start(ctx context.Context, name string, pull, warm bool) *task {
	ctx, cancel := context.WithCancel(ctx)
	t := &task{cancel: cancel, done: make(chan struct{}), warm: warm, phase: state.PlacementLoading}
	if pull {
		t.phase = state.PlacementPulling
	}
	if warm {
		l.log.Debug("pinning a model again", zap.String("model", name))
	} else {
		l.log.Info("loading a model", zap.String("model", name), zap.Bool("pull", pull))
	}
	go func() {
		t.err = l.ensure(ctx, name, t, pull)
		cancel()
		close(t.done)
		l.wake()
	}()
	return t
}

// ensure pulls the model if asked to, loads and pins it, and checks that
// Ollama lists it as running.
func (l *loop) ensure(ctx context.Context, name string, t *task, pull bool) error {
	if pull {
		if err := l.pull(ctx, name, t); err != nil {
			return fmt.Errorf("pull %s: %w", name, err)
		}
		t.set(state.PlacementLoading, pullStatus{})
		l.wake()
	}
	lctx, cancel := context.WithTimeout(ctx, l.r.LoadTimeout)
	defer cancel()
	if err := load(lctx, l.r.Backend, name); err != nil {
		return fmt.Errorf("load %s: %w", name, err)
	}
	return l.confirm(ctx, name)
}

func (l *loop) pull(ctx context.Context, name string, t *task) error {
	var prog pullProgress
	pull := l.r.Pull
	if pull == nil {
		pull = func(ctx context.Context, name string, fn func(api.ProgressResponse) error) error {
			return l.r.Backend.Pull(ctx, &api.PullRequest{Model: name}, fn)
		}
	}
	return pull(ctx, name, func(p api.ProgressResponse) error {
		if st, ok := prog.add(p); ok {
			t.set(state.PlacementPulling, st)
			l.wake()
		}
		return nil
	})
}

// confirm checks that Ollama lists the model as running.
func (l *loop) confirm(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, l.r.CallTimeout)
	defer cancel()
	ps, err := l.r.Backend.ListRunning(ctx)
	if err != nil {
		return fmt.Errorf("list running models: %w", err)
	}
	key := modelKey(name)
	for _, m := range ps.Models {
		if modelKey(listedName(m.Model, m.Name)) == key {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", name, ErrNotRunning)
}

// load loads a model and pins it in memory: a generation with an empty
// prompt and keep_alive -1, or, for a model that cannot generate (an
// embedding model), an embedding of nothing with the same keep_alive.
func load(ctx context.Context, be backend.Backend, name string) error {
	err := generate(ctx, be, name, backend.PinKeepAlive)
	if errors.Is(err, backend.ErrBadRequest) {
		_, eerr := be.Embed(ctx, &api.EmbedRequest{Model: name, KeepAlive: &api.Duration{Duration: backend.PinKeepAlive}})
		if eerr == nil {
			return nil
		}
	}
	return err
}

// generate sends a generation without a prompt, which only loads (keep
// alive below zero: for good) or unloads (zero) the model.
func generate(ctx context.Context, be backend.Backend, name string, keepAlive time.Duration) error {
	stream := false
	req := &api.GenerateRequest{Model: name, KeepAlive: &api.Duration{Duration: keepAlive}, Stream: &stream}
	return be.Generate(ctx, req, func(api.GenerateResponse) error { return nil })
}

// pullStatus is how far a pull is: the fraction done, and the bytes done
// of the bytes announced so far.
type pullStatus struct {
	fraction    float64
	done, total int64
}

// pullProgress adds up a pull's progress over the blobs it has announced.
// The fraction never goes back, even when a new blob adds to the total.
type pullProgress struct {
	total, completed map[string]int64
	last             pullStatus
}

// add takes one progress message and returns how far the pull is, or
// false when it did not move.
func (p *pullProgress) add(m api.ProgressResponse) (pullStatus, bool) {
	if m.Status == "success" {
		return p.advance(pullStatus{fraction: 1, done: p.last.total, total: p.last.total})
	}
	if m.Digest == "" || m.Total <= 0 {
		return p.last, false
	}
	if p.total == nil {
		p.total, p.completed = map[string]int64{}, map[string]int64{}
	}
	p.total[m.Digest], p.completed[m.Digest] = m.Total, min(m.Completed, m.Total)
	var st pullStatus
	for d, t := range p.total {
		st.total += t
		st.done += p.completed[d]
	}
	st.fraction = float64(st.done) / float64(st.total)
	return p.advance(st)
}

func (p *pullProgress) advance(st pullStatus) (pullStatus, bool) {
	if st.fraction <= p.last.fraction {
		return p.last, false
	}
	st.fraction = min(st.fraction, 1)
	p.last = st
	return st, true
}
