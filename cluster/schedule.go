package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
	"github.com/sovra/sovra/scheduler"
)

// Defaults of SchedulingConfig.
const (
	// DefaultScheduleInterval is how often the leader schedules when
	// nothing changes.
	DefaultScheduleInterval = 10 * time.Second
	// DefaultScheduleDebounce is how long the leader lets a burst of
	// changes settle before it schedules.
	DefaultScheduleDebounce = 100 * time.Millisecond
	// scheduleRetry is the wait after a plan that could not be committed.
	scheduleRetry = time.Second
	// scheduleTimeout bounds committing one plan.
	scheduleTimeout = 10 * time.Second
)

// SchedulingConfig configures the scheduler runs of the leader. Zero fields
// take the defaults given after each.
type SchedulingConfig struct {
	// Disabled turns the leader's scheduler off: placements then change
	// only through SetPlacements commands written by someone else.
	Disabled bool
	// Interval is how often the leader schedules when nothing changes, for
	// decisions that time alone triggers (DefaultScheduleInterval).
	Interval time.Duration
	// Debounce is how long the leader waits after a change before it
	// schedules, so that a burst makes one run (DefaultScheduleDebounce).
	Debounce time.Duration
	// DownGrace is how long a down node keeps its replicas
	// (scheduler.DefaultDownGrace).
	DownGrace time.Duration
	// Context is the context length replicas are sized for
	// (scheduler.DefaultContext).
	Context int
	// Headroom is the memory kept free on every GPU
	// (scheduler.DefaultHeadroom).
	Headroom uint64
	// Catalog resolves deployment models (models.NewCatalog(): the
	// built-in entries). Models registered in the state come after it.
	Catalog *models.Catalog
	// NoPreemption stops deployments from evicting lower-priority ones.
	NoPreemption bool
	// Now is the clock of scheduling decisions (time.Now).
	Now func() time.Time
}

func (s *SchedulingConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.Interval, DefaultScheduleInterval)
	def(&s.Debounce, DefaultScheduleDebounce)
	def(&s.DownGrace, scheduler.DefaultDownGrace)
	if s.Context <= 0 {
		s.Context = scheduler.DefaultContext
	}
	if s.Headroom == 0 {
		s.Headroom = scheduler.DefaultHeadroom
	}
	if s.Catalog == nil {
		s.Catalog = models.NewCatalog()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
}

// SchedulerOptions are the options the leader schedules with, at the
// scheduling clock's current time. Every node has the same configuration,
// so any node can compute, from a state, the plan the leader would.
func (c *Cluster) SchedulerOptions() scheduler.Options {
	sc := c.cfg.Scheduling
	o := scheduler.DefaultOptions(sc.Now())
	o.DownGrace, o.Headroom, o.Catalog, o.NoPreemption = sc.DownGrace, sc.Headroom, sc.Catalog, sc.NoPreemption
	o.Load.Context = sc.Context
	return o
}

// ScheduleRun is the record of the leader's last scheduler run.
type ScheduleRun struct {
	// Time is the scheduling clock's time of the run.
	Time time.Time
	// Plan is what the scheduler made of the state at Plan.Index.
	Plan scheduler.Plan
	// Committed is the log index of the SetPlacements that committed the
	// plan; zero when the plan changed nothing or was not committed.
	Committed uint64
	// Err says why a plan that changed something was not committed.
	Err error
}

// schedRecord is the leader's memory of its scheduler runs.
type schedRecord struct {
	mu     sync.Mutex
	last   ScheduleRun
	ok     bool
	status map[string]string // deployment -> status and reason last logged
}

// LastSchedule returns this node's last scheduler run, and false when it
// has not scheduled since it started (it has not led, or the scheduler is
// disabled).
func (c *Cluster) LastSchedule() (ScheduleRun, bool) {
	c.sched.mu.Lock()
	defer c.sched.mu.Unlock()
	return c.sched.last, c.sched.ok
}

func (c *Cluster) recordSchedule(run ScheduleRun) {
	c.sched.mu.Lock()
	defer c.sched.mu.Unlock()
	c.sched.last, c.sched.ok = run, true
}

// scheduleLoop runs on every node and schedules while the node leads:
// after every change of what placement depends on (debounced), when the
// node gains leadership, when a down node's grace runs out, and every
// Interval. A run whose plan changes nothing commits nothing, and the
// plan's own commit makes at most one more run, which changes nothing: the
// loop does not spin. A plan that could not be committed is retried after
// a second.
func (c *Cluster) scheduleLoop(ctx context.Context) {
	sc := c.cfg.Scheduling
	if sc.Disabled {
		return
	}
	tick := time.NewTicker(sc.Interval)
	defer tick.Stop()
	var last uint64 // fingerprint of the state last scheduled; 0: none
	var retry bool
	seen := map[string]useSeen{} // deployment -> what this leader saw of its use
	var wait *time.Timer
	defer func() { stopTimer(wait) }()
	for {
		changed, leader := c.machine.Changed(), c.leaderChanged()
		var wake <-chan time.Time
		stopTimer(wait)
		wait = nil
		if c.IsLeader() {
			idleAt := c.markIdle(ctx, seen)
			if fp := c.fingerprint(); fp != last {
				last = fp
				retry = c.scheduleOnce(ctx)
			}
			if wait = c.wakeTimer(retry, idleAt); wait != nil {
				wake = wait.C
			}
		} else {
			last, retry = 0, false
			clear(seen)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			if !sleepCtx(ctx, sc.Debounce) {
				return
			}
		case <-leader:
			last = 0
		case <-tick.C:
			last = 0
		case <-wake:
			last = 0
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// wakeTimer fires when the next down node's grace runs out or the next
// deployment falls idle, or after scheduleRetry when a plan is to be
// retried; it is nil when none is due.
func (c *Cluster) wakeTimer(retry bool, idleAt int64) *time.Timer {
	sc := c.cfg.Scheduling
	now := sc.Now().UnixMilli()
	next := int64(-1)
	c.machine.Read(func(s *state.State) {
		for _, n := range s.Nodes {
			end := n.StatusSince + sc.DownGrace.Milliseconds()
			if n.Status == state.NodeDown && end >= now && (next < 0 || end < next) {
				next = end
			}
		}
	})
	if idleAt >= 0 && (next < 0 || idleAt+1 < next) {
		next = idleAt + 1
	}
	d := time.Duration(-1)
	if next >= 0 {
		d = time.Duration(next-now+1)*time.Millisecond + sc.Debounce
	}
	if retry && (d < 0 || d > scheduleRetry) {
		d = scheduleRetry
	}
	if d < 0 {
		return nil
	}
	return time.NewTimer(d)
}

// fingerprint hashes what placement depends on: deployments (their
// versions and idleness; not their last use), nodes (status, labels, GPUs, models on disk), placements
// (their states) and registered models (their versions). Pull progress and the rest of the state leave it alone.
// The entities' hashes are summed, so map order does not matter.
func (c *Cluster) fingerprint() uint64 {
	var sum uint64 = 1
	c.machine.Read(func(s *state.State) {
		for _, d := range s.Deployments {
			sum += hashOf("d", d.Name, strconv.FormatUint(d.Version, 10), strconv.FormatBool(d.Idle))
		}
		for _, n := range s.Nodes {
			sum += hashNode(n)
		}
		for _, p := range s.Placements {
			sum += hashOf("p", p.Deployment, p.Node, string(p.State))
		}
		for _, m := range s.Models {
			sum += hashOf("m", m.Name, strconv.FormatUint(m.ModifiedIndex, 10))
		}
	})
	return sum
}

func hashOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = io.WriteString(h, p)
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

func hashNode(n *state.Node) uint64 {
	parts := []string{"n", n.ID, string(n.Status), strconv.FormatInt(n.StatusSince, 10)}
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k, n.Labels[k])
	}
	for _, g := range n.GPUs {
		parts = append(parts, strconv.Itoa(g.Index), g.Model, strconv.FormatUint(g.MemoryBytes, 10))
	}
	parts = append(parts, "m")
	parts = append(parts, n.Models...)
	return hashOf(parts...)
}

// leaderReady makes sure, once per term, that this leader's state holds
// every entry committed before it led (a barrier). Entries committed later
// wake the scheduler again as they are applied, so a run that missed one is
// followed by one that sees it.
func (c *Cluster) leaderReady(ctx context.Context) error {
	term := c.raft.CurrentTerm()
	if c.readyTerm.Load() == term {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, scheduleTimeout)
	defer cancel()
	_, err := c.barrier(ctx, term)
	return err
}

// scheduleOnce schedules the current state and commits the plan when it
// changes something. It says whether the run should be retried: the plan
// changed something and could not be committed.
func (c *Cluster) scheduleOnce(ctx context.Context) (retry bool) {
	if err := c.leaderReady(ctx); err != nil {
		c.logRetry("scheduler cannot read the state", err)
		return true
	}
	opts := c.SchedulerOptions()
	plan := scheduler.Schedule(c.machine.Snapshot(), opts)
	run := ScheduleRun{Time: opts.Now, Plan: plan}
	c.logStatus(plan)
	if cmd := plan.SetPlacements(); len(cmd.Deployments) > 0 {
		run.Committed, run.Err = c.commitPlan(ctx, plan, cmd, opts)
	}
	c.recordSchedule(run)
	switch {
	case run.Err == nil:
		return false
	case errors.Is(run.Err, scheduler.ErrStale):
		// The state moved: its change wakes the loop.
		c.log.Debug("plan is stale; scheduling again", zap.Error(run.Err))
		return false
	case errors.Is(run.Err, scheduler.ErrInfeasible):
		// The same state would give the same plan: wait for a change.
		c.log.Error("scheduler made an infeasible plan", zap.Error(run.Err))
		return false
	}
	c.log.Warn("plan not committed", zap.Error(run.Err))
	return true
}

// commitPlan re-checks the plan against the state as it is now and
// commits it through raft on this node, which must lead.
func (c *Cluster) commitPlan(ctx context.Context, plan scheduler.Plan, cmd state.SetPlacements, opts scheduler.Options) (uint64, error) {
	var err error
	c.machine.Read(func(s *state.State) { err = scheduler.Verify(s, plan, opts) })
	if err != nil {
		return 0, err
	}
	entry, err := state.Encode(state.Command{Type: state.TypeSetPlacements, Body: cmd})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, scheduleTimeout)
	defer cancel()
	out, err := c.applyLocal(ctx, entry)
	if err == nil {
		err = out.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("commit placements: %w", err)
	}
	c.logPlan(plan, out.Index)
	return out.Index, nil
}

// logPlan logs what a committed plan changed.
func (c *Cluster) logPlan(plan scheduler.Plan, index uint64) {
	for _, d := range plan.Deployments {
		for _, a := range d.Placements {
			if a.Action == scheduler.ActionPlace {
				c.log.Info("replica placed", zap.String("deployment", d.Name), zap.String("on", a.Node),
					zap.String("model", d.Model), zap.Uint64("bytes", a.Bytes()), zap.Uint64("index", index))
			}
		}
	}
	for _, r := range plan.Removals {
		c.log.Info("replica removed", zap.String("deployment", r.Deployment), zap.String("on", r.Node),
			zap.String("cause", string(r.Cause)), zap.String("reason", r.Reason), zap.Uint64("index", index))
	}
	for _, e := range plan.Evictions {
		c.log.Warn("replica evicted", zap.String("deployment", e.Deployment), zap.String("on", e.Node),
			zap.Int("priority", e.Priority), zap.String("by", e.By), zap.Int("by_priority", e.ByPriority),
			zap.String("reason", e.Reason), zap.Uint64("index", index))
	}
}

// logStatus logs a deployment's status when it changes from one run to
// the next: unplaceable and invalid ones as warnings.
func (c *Cluster) logStatus(plan scheduler.Plan) {
	c.sched.mu.Lock()
	defer c.sched.mu.Unlock()
	seen := make(map[string]string, len(plan.Deployments))
	for _, d := range plan.Deployments {
		s := string(d.Status) + ": " + d.Reason
		seen[d.Name] = s
		if c.sched.status[d.Name] == s {
			continue
		}
		fields := []zap.Field{zap.String("deployment", d.Name), zap.String("status", string(d.Status)), zap.String("reason", d.Reason)}
		if d.Status == scheduler.StatusOK {
			c.log.Info("deployment status", fields...)
		} else {
			c.log.Warn("deployment status", fields...)
		}
	}
	c.sched.status = seen
}
