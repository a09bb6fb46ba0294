package cluster

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// idleDue lists the deployments due to go idle at now (Unix ms): an idle
// timeout, not idle, and unused for longer than the timeout. seen holds
// when this leader first saw each deployment (Unix ms); use before that
// counts as use then, so a new leader, which may not have seen a node's
// latest touch, gives every deployment a whole timeout, and so does a
// deployment written without a time. idleDue adds the deployments it
// sees for the first time and forgets the ones gone. It also returns when
// the next deployment falls due (-1: none).
func idleDue(s *state.State, now int64, seen map[string]int64) (due []*state.Deployment, next int64) {
	next = -1
	for name := range seen {
		if s.Deployments[name] == nil {
			delete(seen, name)
		}
	}
	for _, d := range s.Deployments {
		if d.IdleTimeout <= 0 || d.Idle {
			continue
		}
		first, ok := seen[d.Name]
		if !ok {
			first = now
			seen[d.Name] = now
		}
		end := max(d.LastUsed, first) + d.IdleTimeout*1000
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
func (c *Cluster) markIdle(ctx context.Context, seen map[string]int64) (next int64) {
	now := c.cfg.Scheduling.Now().UnixMilli()
	var due []*state.Deployment
	c.machine.Read(func(s *state.State) { due, next = idleDue(s, now, seen) })
	for _, d := range due {
		entry, err := state.Encode(state.Command{Type: state.TypeSetDeploymentIdle, Flags: state.FlagIgnorable,
			Body: state.SetDeploymentIdle{Name: d.Name, Idle: true, Time: now, UnusedSince: d.LastUsed}})
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
				zap.Duration("unused", time.Duration(now-max(d.LastUsed, seen[d.Name]))*time.Millisecond))
		}
	}
	return next
}
