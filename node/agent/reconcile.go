package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/backend"
)

// Defaults of the Reconciler's zero fields.
const (
	// DefaultResyncInterval is how often the reconciler looks at Ollama
	// when nothing else wakes it. A restarted Ollama is noticed within it.
	DefaultResyncInterval = 15 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the exponential backoff
	// after a failure.
	DefaultRetryMin = time.Second
	DefaultRetryMax = 5 * time.Minute
	// DefaultProgressEvery and DefaultProgressStep throttle pull progress
	// reports: a new progress is reported once it moved by the step or the
	// last report is that old, so raft is not flooded.
	DefaultProgressEvery = time.Second
	DefaultProgressStep  = 0.05
	// DefaultCallTimeout bounds one quick Ollama call (list, ps, unload,
	// delete).
	DefaultCallTimeout = 30 * time.Second
	// DefaultLoadTimeout bounds loading one model into memory.
	DefaultLoadTimeout = 30 * time.Minute
	// DefaultReportTimeout bounds one report to the cluster.
	DefaultReportTimeout = 10 * time.Second
)

// PinnedHorizon tells a pinned model apart in /api/ps: its expiry lies
// further ahead than this. Ollama reads keep_alive -1 as the longest
// duration there is, about 292 years.
const PinnedHorizon = 100 * 365 * 24 * time.Hour

// ErrNotRunning is wrapped by the error of a load after which Ollama does
// not list the model as running.
var ErrNotRunning = errors.New("model is not running after loading")

// StateSource is the replicated state as the reconciler reads it;
// *state.Machine satisfies it.
type StateSource interface {
	// Read calls fn with the state; fn must not keep it.
	Read(fn func(*state.State))
	// Changed returns a channel closed at the next change of the state.
	Changed() <-chan struct{}
}

// Reporter commits the reconciler's placement reports; *cluster.Cluster
// satisfies it. Business errors come back as the error (state.ErrNotFound
// when the placement has gone).
type Reporter interface {
	Apply(ctx context.Context, cmd state.Command) (state.Outcome, error)
}

// Clock tells the time and makes the reconciler's timers; tests may drive
// it by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Reconciler drives the local Ollama to this node's placements and reports
// how each stands: a model not on disk is pulled (state pulling, with
// progress), then loaded and pinned with keep_alive -1 (loading), and is
// ready once /api/ps lists it. Models no longer placed here are unloaded
// and kept on disk as a cache, unless DeleteUnplaced. Failures are reported
// as failed with the error's text and retried with exponential backoff. A
// model that leaves /api/ps (Ollama restarted) is loaded again.
//
// Fields left zero take the defaults above. Run owns the reconciler's
// work; nothing it does holds a lock that serving takes.
type Reconciler struct {
	// NodeID is this node: placements of other nodes are ignored.
	NodeID   string
	State    StateSource
	Reporter Reporter
	Backend  backend.Backend
	Logger   *zap.Logger
	// Interval is the periodic resync.
	Interval time.Duration
	// RetryMin and RetryMax bound the backoff after a failure: RetryMin
	// after the first, doubling with each failure in a row up to RetryMax.
	// While Ollama does not answer, or Sync fails, the wait stops growing
	// at Interval.
	RetryMin, RetryMax time.Duration
	// ProgressEvery and ProgressStep throttle pull progress reports.
	ProgressEvery time.Duration
	ProgressStep  float64
	// CallTimeout, LoadTimeout and ReportTimeout bound one quick Ollama
	// call, one model load and one report. Pulls are bounded by nothing
	// but the placement: removing it stops the pull.
	CallTimeout, LoadTimeout, ReportTimeout time.Duration
	// DeleteUnplaced deletes from disk, once unloaded, the models that
	// were placed here during this run and no longer are.
	DeleteUnplaced bool
	// OnModels, when set, receives the names of the models on disk (as
	// Ollama lists them, sorted; nil when none) when first known and
	// whenever they change, on Run's goroutine.
	OnModels func(models []string)
	// Sync, when set, is called before the first reconcile and retried
	// until it succeeds: it returns once the local state has caught up
	// with the cluster, so that a restarting node does not unload models
	// its stale state does not place.
	Sync func(ctx context.Context) error
	// Recheck, when set, asks for Ollama to be looked at again soon: the
	// node sends on it when a request failed on the local Ollama, so that a
	// replica whose Ollama went away or lost the model stops being ready
	// well before the next resync. Looks it asks for come at most one per
	// RetryMin.
	Recheck <-chan struct{}
	// Pull, when set, puts a model on the local Ollama instead of
	// Backend.Pull (the node copies it from a peer first: modelshare).
	Pull func(ctx context.Context, name string, fn func(api.ProgressResponse) error) error
	// Clock is the real clock when nil.
	Clock Clock
}

// Run reconciles on every change of the state, on every finished pull or
// load, every Interval and soon after a Recheck, until ctx ends; it then
// stops its pulls and loads and returns nil. It fails at once when a
// required field is unset.
func (r *Reconciler) Run(ctx context.Context) error {
	if err := r.check(); err != nil {
		return err
	}
	l := newLoop(r.withDefaults())
	defer l.stop()
	if !l.sync(ctx) {
		return nil
	}
	for {
		changed := l.r.State.Changed()
		wake := l.pass(ctx)
		// Measured now, not when the pass began: time the pass took (or a
		// test's clock moved meanwhile) counts toward the wait.
		wait := max(wake.Sub(l.clock.Now()), 0)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-l.kick:
		case <-l.r.Recheck:
			l.recheck()
		case <-l.clock.After(wait):
		}
	}
}

func (r *Reconciler) check() error {
	switch {
	case r.NodeID == "":
		return errors.New("agent: reconciler without a node id")
	case r.State == nil || r.Reporter == nil || r.Backend == nil:
		return errors.New("agent: reconciler needs a state, a reporter and a backend")
	}
	return nil
}

// withDefaults returns a copy with the zero fields filled in.
func (r *Reconciler) withDefaults() Reconciler {
	c := *r
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, DefaultResyncInterval)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.ProgressEvery, DefaultProgressEvery)
	def(&c.CallTimeout, DefaultCallTimeout)
	def(&c.LoadTimeout, DefaultLoadTimeout)
	def(&c.ReportTimeout, DefaultReportTimeout)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.ProgressStep <= 0 {
		c.ProgressStep = DefaultProgressStep
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return c
}

// backoff is the wait after the n-th failure in a row (n >= 1).
func backoff(lo, hi time.Duration, n int) time.Duration {
	if n < 1 {
		return 0
	}
	d := float64(lo) * math.Pow(2, float64(n-1))
	if d >= float64(hi) {
		return hi
	}
	return time.Duration(d)
}

// report is what the reconciler says about one placement.
type report struct {
	state    state.PlacementState
	reason   string
	progress float64
	// done and total are a pull's bytes.
	done, total int64
}

// placed is one placement of this node as the state holds it.
type placed struct {
	deployment string
	model      string
	cur        report
	index      uint64 // the placement's ModifiedIndex
}

// wantModel is one model this node should serve, with its placements.
type wantModel struct {
	name string // as the first deployment (by name) spells it
	deps []placed
}

// modelState is the reconciler's record of one model it works on.
type modelState struct {
	task     *task
	failures int // in a row
	retryAt  time.Time
	reason   string // the last failure, "" after a success
}

// sentReport is the last report committed for a deployment.
type sentReport struct {
	rep   report
	index uint64
	at    time.Time
}

// observation is what Ollama holds, by model key.
type observation struct {
	disk    map[string]string // key -> name as listed
	running map[string]api.ProcessModelResponse
}

// loop is one Run's working state; only Run's goroutine touches it, except
// the tasks, which own their fields under their own lock.
type loop struct {
	r     Reconciler
	log   *zap.Logger
	clock Clock
	kick  chan struct{}

	models map[string]*modelState // by model key
	want   map[string]*wantModel
	sent   map[string]sentReport // by deployment
	pinned map[string]bool       // models this run loaded and pinned
	// placedAnywhere holds the models placed on any node.
	placedAnywhere map[string]bool
	owned          map[string]bool // models placed here during this run

	obs          observation
	obsErr       error
	obsFails     int
	observeAt    time.Time
	observedAt   time.Time
	needObserve  bool
	reportedDisk []string
	diskKnown    bool

	reportRetryAt time.Time
	progressWake  time.Time
}

func newLoop(r Reconciler) *loop {
	return &loop{
		r:      r,
		log:    r.Logger,
		clock:  r.Clock,
		kick:   make(chan struct{}, 1),
		models: map[string]*modelState{},
		sent:   map[string]sentReport{},
		pinned: map[string]bool{},
		owned:  map[string]bool{},
	}
}

// wake makes Run pass again soon; it never blocks.
func (l *loop) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// stop cancels the tasks and waits for them.
func (l *loop) stop() {
	for _, ms := range l.models {
		if ms.task != nil {
			ms.task.cancel()
			<-ms.task.done
		}
	}
}

// recheck brings the next look at Ollama forward to RetryMin after the
// last one.
func (l *loop) recheck() {
	if due := l.observedAt.Add(l.r.RetryMin); due.Before(l.observeAt) {
		l.observeAt = due
	}
}

// sync waits for Sync to succeed; it reports false when ctx ended first.
func (l *loop) sync(ctx context.Context) bool {
	if l.r.Sync == nil {
		return true
	}
	for n := 1; ; n++ {
		sctx, cancel := context.WithTimeout(ctx, l.r.ReportTimeout)
		err := l.r.Sync(sctx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.log.Info("waiting for the cluster state before reconciling", zap.Error(err))
		select {
		case <-ctx.Done():
			return false
		case <-l.clock.After(backoff(l.r.RetryMin, min(l.r.RetryMax, l.r.Interval), n)):
		}
	}
}

// pass reconciles once and returns when the next pass is due if nothing
// wakes Run before.
func (l *loop) pass(ctx context.Context) time.Time {
	now := l.clock.Now()
	l.reap(now)
	want := l.desired()
	if l.needObserve || !sameKeys(want, l.want) || !now.Before(l.observeAt) {
		l.observe(ctx)
		now = l.clock.Now()
		// Read the placements again: a model another node loaded while
		// Ollama was being listed was placed before it loaded, so this
		// read sees it placed and it is not mistaken for a leftover.
		want = l.desired()
	}
	l.want = want
	if l.obsErr == nil {
		l.cleanup(ctx, want)
		l.converge(ctx, want, now)
	}
	l.report(ctx, want, now)
	return l.nextWake(now)
}

// desired reads this node's placements, grouped by model, and notes the
// models placed on any node.
func (l *loop) desired() map[string]*wantModel {
	want := map[string]*wantModel{}
	l.placedAnywhere = map[string]bool{}
	l.r.State.Read(func(s *state.State) {
		for _, p := range s.Placements {
			d := s.Deployments[p.Deployment]
			if d == nil {
				continue
			}
			key := modelKey(d.Model)
			l.placedAnywhere[key] = true
			if p.Node != l.r.NodeID {
				continue
			}
			w := want[key]
			if w == nil {
				w = &wantModel{}
				want[key] = w
			}
			w.deps = append(w.deps, placed{
				deployment: p.Deployment, model: d.Model, index: p.ModifiedIndex,
				cur: report{state: p.State, reason: p.Reason, progress: p.Progress, done: p.BytesDone, total: p.BytesTotal},
			})
		}
	})
	for _, w := range want {
		sort.Slice(w.deps, func(i, j int) bool { return w.deps[i].deployment < w.deps[j].deployment })
		w.name = w.deps[0].model
	}
	return want
}

func sameKeys(a, b map[string]*wantModel) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// reap takes in the tasks that finished.
func (l *loop) reap(now time.Time) {
	for key, ms := range l.models {
		t := ms.task
		if t == nil || !t.finished() {
			continue
		}
		ms.task = nil
		l.needObserve = true
		switch {
		case t.stopped:
		case t.err == nil:
			ms.failures, ms.reason = 0, ""
			l.pinned[key] = true
		default:
			ms.failures++
			ms.reason = t.err.Error()
			wait := backoff(l.r.RetryMin, l.r.RetryMax, ms.failures)
			ms.retryAt = now.Add(wait)
			l.log.Warn("model failed", zap.String("model", key), zap.Int("failures", ms.failures),
				zap.Duration("retry_in", wait), zap.Error(t.err))
		}
	}
}

// observe lists the models on disk and in memory.
func (l *loop) observe(ctx context.Context) {
	l.needObserve = false
	obs, err := l.fetch(ctx)
	now := l.clock.Now()
	l.observedAt = now
	if err != nil {
		l.obsFails++
		// Never wait longer than a resync: Ollama may be back any moment.
		l.observeAt = now.Add(backoff(l.r.RetryMin, min(l.r.RetryMax, l.r.Interval), l.obsFails))
		if l.obsErr == nil {
			l.log.Warn("ollama does not answer", zap.Error(err))
		}
		l.obsErr = err
		return
	}
	if l.obsErr != nil {
		l.log.Info("ollama answers again", zap.Int("failures", l.obsFails))
	}
	l.obs, l.obsErr, l.obsFails = obs, nil, 0
	l.observeAt = now.Add(l.r.Interval)
	l.publishDisk()
}

func (l *loop) fetch(ctx context.Context) (observation, error) {
	ctx, cancel := context.WithTimeout(ctx, l.r.CallTimeout)
	defer cancel()
	list, err := l.r.Backend.List(ctx)
	if err != nil {
		return observation{}, fmt.Errorf("list models: %w", err)
	}
	ps, err := l.r.Backend.ListRunning(ctx)
	if err != nil {
		return observation{}, fmt.Errorf("list running models: %w", err)
	}
	obs := observation{disk: map[string]string{}, running: map[string]api.ProcessModelResponse{}}
	for _, m := range list.Models {
		name := listedName(m.Model, m.Name)
		obs.disk[modelKey(name)] = name
	}
	for _, m := range ps.Models {
		obs.running[modelKey(listedName(m.Model, m.Name))] = m
	}
	return obs, nil
}

func listedName(model, name string) string {
	if model != "" {
		return model
	}
	return name
}

// publishDisk hands the models on disk to OnModels when they changed.
func (l *loop) publishDisk() {
	if l.r.OnModels == nil {
		return
	}
	var names []string
	for _, n := range l.obs.disk {
		names = append(names, n)
	}
	sort.Strings(names)
	if l.diskKnown && slices.Equal(names, l.reportedDisk) {
		return
	}
	l.reportedDisk, l.diskKnown = names, true
	l.r.OnModels(slices.Clone(names))
}

// cleanup stops work on models no longer placed here, unloads them and,
// with DeleteUnplaced, deletes them.
func (l *loop) cleanup(ctx context.Context, want map[string]*wantModel) {
	for key, ms := range l.models {
		if _, ok := want[key]; ok {
			continue
		}
		if ms.task == nil {
			delete(l.models, key)
		} else if !ms.task.stopped {
			ms.task.stopped = true
			ms.task.cancel()
		}
	}
	for key, run := range l.obs.running {
		_, placed := want[key]
		_, busy := l.models[key]
		if placed || busy || !l.mayUnload(key, run) {
			continue
		}
		l.unload(ctx, key, listedName(run.Model, run.Name))
	}
	if l.r.DeleteUnplaced {
		l.deleteUnplaced(ctx, want)
	}
}

// mayUnload reports whether a running model that is not placed here is
// this reconciler's to unload: one it pinned, or one pinned before it
// started (by an earlier run) that no node serves. A model pinned by
// someone else and placed on another node is left alone, for nodes that
// share one Ollama.
func (l *loop) mayUnload(key string, run api.ProcessModelResponse) bool {
	return l.pinned[key] || (pinnedAt(run, l.clock.Now()) && !l.placedAnywhere[key])
}

func (l *loop) unload(ctx context.Context, key, name string) {
	ctx, cancel := context.WithTimeout(ctx, l.r.CallTimeout)
	defer cancel()
	if err := generate(ctx, l.r.Backend, name, 0); err != nil {
		l.log.Warn("could not unload a model no longer placed", zap.String("model", name), zap.Error(err))
		l.needObserve = true
		return
	}
	delete(l.pinned, key)
	delete(l.obs.running, key)
	l.log.Info("unloaded a model no longer placed", zap.String("model", name))
}

func (l *loop) deleteUnplaced(ctx context.Context, want map[string]*wantModel) {
	for key := range l.owned {
		name, onDisk := l.obs.disk[key]
		_, placed := want[key]
		_, busy := l.models[key]
		if placed || busy || !onDisk {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, l.r.CallTimeout)
		err := l.r.Backend.Delete(dctx, &api.DeleteRequest{Model: name})
		cancel()
		l.needObserve = true
		if err != nil {
			l.log.Warn("could not delete a model no longer placed", zap.String("model", name), zap.Error(err))
			continue
		}
		delete(l.owned, key)
		l.log.Info("deleted a model no longer placed", zap.String("model", name))
	}
}

// converge starts a pull or a load for each placed model that needs one
// and is not waiting out a backoff.
func (l *loop) converge(ctx context.Context, want map[string]*wantModel, now time.Time) {
	for key, w := range want {
		l.owned[key] = true
		ms := l.models[key]
		if ms == nil {
			ms = &modelState{}
			l.models[key] = ms
		}
		if ms.task != nil {
			continue
		}
		run, running := l.obs.running[key]
		switch {
		case running && pinnedAt(run, now):
			ms.failures, ms.reason = 0, ""
		case ms.reason != "" && now.Before(ms.retryAt):
		case running:
			// Loaded but no longer pinned (a request set its own
			// keep_alive): pin it again; it stays ready meanwhile.
			ms.task = l.start(ctx, w.name, false, true)
		default:
			_, onDisk := l.obs.disk[key]
			ms.task = l.start(ctx, w.name, !onDisk, false)
		}
	}
}

// pinnedAt reports whether a running model is pinned in memory. An unknown
// expiry counts as pinned.
func pinnedAt(m api.ProcessModelResponse, now time.Time) bool {
	return m.ExpiresAt.IsZero() || m.ExpiresAt.After(now.Add(PinnedHorizon))
}

// modelKey is how Ollama tells models apart: case-insensitive, without the
// default registry and namespace, with the default tag.
// ModelKey is the form of a model name that names compare by: lower
// case, without Ollama's default registry and namespace, with a tag.
func ModelKey(name string) string { return modelKey(name) }

func modelKey(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "registry.ollama.ai/")
	n = strings.TrimPrefix(n, "library/")
	if n != "" && !strings.Contains(n[strings.LastIndex(n, "/")+1:], ":") {
		n += ":latest"
	}
	return n
}
