package agent

import (
	"context"
	"errors"
	"math"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// report commits, for every placement whose state differs from what the
// reconciler knows, the state it should have.
func (l *loop) report(ctx context.Context, want map[string]*wantModel, now time.Time) {
	l.progressWake = time.Time{}
	live := map[string]bool{}
	keys := make([]string, 0, len(want))
	for key, w := range want {
		keys = append(keys, key)
		for _, p := range w.deps {
			live[p.deployment] = true
		}
	}
	for dep := range l.sent {
		if !live[dep] {
			delete(l.sent, dep)
		}
	}
	if now.Before(l.reportRetryAt) {
		return
	}
	sort.Strings(keys)
	for _, key := range keys {
		rep, ok := l.wish(key)
		if !ok {
			continue
		}
		for _, p := range want[key].deps {
			if l.due(p, rep, now) && !l.send(ctx, p.deployment, rep, now) {
				l.reportRetryAt = now.Add(l.r.RetryMin)
				return
			}
		}
	}
}

// wish is the state of a model's placements, or false when not yet known.
func (l *loop) wish(key string) (report, bool) {
	if l.obsErr != nil {
		return report{state: state.PlacementFailed, reason: "ollama: " + l.obsErr.Error()}, true
	}
	ms := l.models[key]
	if ms == nil {
		return report{}, false
	}
	if t := ms.task; t != nil {
		phase, pull := t.get()
		switch {
		case phase == state.PlacementPulling:
			return report{state: phase, progress: pull.fraction, done: pull.done, total: pull.total}, true
		case t.warm:
			return report{state: state.PlacementReady}, true
		}
		return report{state: phase}, true
	}
	if ms.reason != "" {
		return report{state: state.PlacementFailed, reason: ms.reason}, true
	}
	if _, ok := l.obs.running[key]; ok {
		return report{state: state.PlacementReady}, true
	}
	return report{}, false
}

// due reports whether rep should be committed for p now. A report already
// committed but not yet applied locally counts as the current state; pull
// progress is throttled.
func (l *loop) due(p placed, rep report, now time.Time) bool {
	cur := p.cur
	last, sent := l.sent[p.deployment]
	if sent && p.index < last.index {
		cur = last.rep
	}
	switch {
	case cur == rep:
		return false
	case rep.state != state.PlacementPulling || cur.state != state.PlacementPulling:
		return true
	case math.Abs(rep.progress-cur.progress) >= l.r.ProgressStep:
		return true
	}
	next := last.at.Add(l.r.ProgressEvery)
	if sent && now.Before(next) {
		if l.progressWake.IsZero() || next.Before(l.progressWake) {
			l.progressWake = next
		}
		return false
	}
	return true
}

// send commits one report; it reports false when the cluster did not take
// it and reports should be retried later.
func (l *loop) send(ctx context.Context, dep string, rep report, now time.Time) bool {
	actx, cancel := context.WithTimeout(ctx, l.r.ReportTimeout)
	defer cancel()
	out, err := l.r.Reporter.Apply(actx, state.Command{Type: state.TypeReportPlacement, Body: state.ReportPlacement{
		Deployment: dep, Node: l.r.NodeID, State: rep.state, Reason: rep.reason, Progress: rep.progress,
		BytesDone: rep.done, BytesTotal: rep.total,
	}})
	switch {
	case errors.Is(err, state.ErrNotFound):
		return true // the placement went away meanwhile
	case err != nil:
		if ctx.Err() == nil {
			l.log.Warn("could not report a placement", zap.String("deployment", dep), zap.Error(err))
		}
		return false
	}
	l.sent[dep] = sentReport{rep: rep, index: out.Index, at: now}
	l.log.Debug("reported placement", zap.String("deployment", dep), zap.String("state", string(rep.state)),
		zap.Float64("progress", rep.progress), zap.String("reason", rep.reason))
	return true
}

// nextWake is when the earliest thing is due: a resync, a retry, a
// report retry or a throttled progress report.
func (l *loop) nextWake(now time.Time) time.Time {
	next := l.observeAt
	consider := func(t time.Time) {
		if t.After(now) && t.Before(next) {
			next = t
		}
	}
	for key, ms := range l.models {
		if _, ok := l.want[key]; ok && ms.task == nil && ms.reason != "" {
			consider(ms.retryAt)
		}
	}
	consider(l.reportRetryAt)
	consider(l.progressWake)
	if next.Before(now) {
		return now
	}
	return next
}
