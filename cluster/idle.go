package cluster

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// useSeen is what the leader saw of a deployment's use, on its own clock
// (Unix ms): when it first saw the deployment, and when it first saw its
// latest recorded use (UsedIndex).
type useSeen struct {
	first int64
	index uint64
	at    int64
}

// idleDue lists the deployments due to go idle at now (Unix ms, the
// leader's clock): an idle timeout, not idle, and no use seen for longer
// than the timeout. A use counts from when this leader saw it recorded,
// never from the clock of the node that recorded it, so a node whose
// clock is minutes behind cannot make a busy deployment look unused (nor
// one ahead keep an unused one). A new leader, which saw none of the
// uses before it led, gives every deployment a whole timeout. idleDue
// notes the uses it sees for the first time and forgets the deployments
// gone. It also returns when the next deployment falls due (-1: none).
func idleDue(s *state.State, now int64, seen map[string]useSeen) (due []*state.Deployment, next int64) {
	next = -1
	for name := range seen {
		if s.Deployments[name] == nil {
			delete(seen, name)
		}
	}
	for _, d := range s.Deployments {
		u, ok := seen[d.Name]
		switch {
		case !ok:
			u = useSeen{first: now, index: d.UsedIndex, at: now}
		case u.index != d.UsedIndex:
			u.index, u.at = d.UsedIndex, now
		}
		seen[d.Name] = u
		if d.IdleTimeout <= 0 || d.Idle {
			continue
		}
		end := max(u.at, u.first) + d.IdleTimeout*1000
		if now > end {
			e := *d
			due = append(due, &e)
			continue
		}
		if next < 0 || end < next {
			next = end
		}
	}
	return due, next
}

// markIdle marks the deployments due to go idle, as of the scheduling
// clock. A deployment used meanwhile refuses the mark (conflict), which
// is how a request racing the leader wins.
// It returns when the next deployment falls due (-1: none).
func (c *Cluster) markIdle(ctx context.Context, seen map[string]useSeen) (next int64) {
	now := c.cfg.Scheduling.Now().UnixMilli()
	var due []*state.Deployment
	c.machine.Read(func(s *state.State) { due, next = idleDue(s, now, seen) })
	// A member of an older version would ignore UnusedSinceIndex: it is
	// sent only when every member honours it.
	byIndex := len(due) > 0 && c.requireLevel(state.LevelIdleByIndex, "") == nil
	for _, d := range due {
		mark := state.SetDeploymentIdle{Name: d.Name, Idle: true, Time: now, UnusedSince: d.LastUsed}
		if byIndex {
			mark.UnusedSinceIndex = d.UsedIndex
		}
		entry, err := state.Encode(state.Command{Type: state.TypeSetDeploymentIdle, Flags: state.FlagIgnorable, Body: mark})
		if err != nil {
			c.log.Error("encode idle mark", zap.Error(err))
			continue
		}
		actx, cancel := context.WithTimeout(ctx, scheduleTimeout)
		out, err := c.applyLocal(actx, entry)
		cancel()
		if err == nil {
			err = out.Err()
		}
		switch {
		case errors.Is(err, state.ErrConflict), errors.Is(err, state.ErrNotFound):
			c.log.Debug("deployment not marked idle", zap.String("deployment", d.Name), zap.Error(err))
		case err != nil:
			c.logRetry("marking a deployment idle failed", err)
			return next
		default:
			c.log.Info("deployment idle", zap.String("deployment", d.Name),
				zap.Duration("unused", time.Duration(now-max(seen[d.Name].at, seen[d.Name].first))*time.Millisecond))
		}
	}
	return next
}
