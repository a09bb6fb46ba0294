package node

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ticker"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/quota"
	"github.com/sovra/sovra/node/usage"
)

// UsageConfig configures usage accounting. Zero fields take the defaults.
type UsageConfig struct {
	// Flush is how often a node writes its usage batch (DefaultUsageFlush).
	Flush time.Duration
	// HourRetention: hour buckets older than this are rolled up into
	// day buckets (DefaultUsageHours); DayRetention: day buckets older
	// than this are dropped (DefaultUsageDays).
	HourRetention time.Duration
	DayRetention  time.Duration
}

// Usage defaults.
const (
	DefaultUsageFlush = 10 * time.Second
	DefaultUsageHours = 7 * 24 * time.Hour
	DefaultUsageDays  = 400 * 24 * time.Hour
)

func (c UsageConfig) withDefaults() UsageConfig {
	if c.Flush <= 0 {
		c.Flush = DefaultUsageFlush
	}
	if c.HourRetention <= 0 {
		c.HourRetention = DefaultUsageHours
	}
	if c.DayRetention <= 0 {
		c.DayRetention = DefaultUsageDays
	}
	return c
}

// quotaConfig gives the API the limiter that enforces the API keys'
// limits across the cluster (each node admits against the usage its peers
// report in the load exchange, shareLoad, plus its own) and, in a
// cluster, the usage recorder.
func (n *Node) quotaConfig(cfg *api.Config) {
	qc := quota.Config{Self: n.cfg.NodeID}
	if n.cluster != nil {
		qc.Nodes = func() int { return len(n.loadPeers()) + 1 }
		rec := &quota.RecordedTokens{Read: n.cluster.Machine().Read, Every: 5 * time.Second}
		qc.Recorded = rec.Tokens
		n.usage = usage.New(n.cfg.NodeID, nil)
		cfg.Usage = n.usage
	}
	n.quota = quota.New(qc)
	cfg.Quota = n.quota
}

// runUsage flushes this node's usage batches and, on the leader, rolls
// old hour buckets up into days.
func (n *Node) runUsage(ctx context.Context) {
	uc := n.cfg.Usage.withDefaults()
	n.runWG.Add(2)
	go func() {
		defer n.runWG.Done()
		ticker.Every(ctx, uc.Flush, n.flushUsage)
	}()
	go func() {
		defer n.runWG.Done()
		ticker.Every(ctx, time.Hour, func(ctx context.Context) { n.rollupUsage(ctx, uc) })
	}()
}

func (n *Node) flushUsage(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.usage.Flush(ctx, n.cluster.Apply); err != nil && ctx.Err() == nil {
		n.log.Warn("could not write the usage batch; it is retried", zap.Error(err))
	}
}

// flushOnStop writes the usage and the keys' last uses this node has not
// written yet, so a graceful stop loses none.
func (n *Node) flushOnStop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.FlushUsage(ctx); err != nil {
		n.log.Warn("could not write the last usage batch before stopping", zap.Error(err))
	}
	if err := n.FlushEnergy(ctx); err != nil {
		n.log.Warn("could not write the last energy batch before stopping", zap.Error(err))
	}
	n.reportKeyUse(ctx)
}

// FlushUsage writes this node's usage batch now (tests, shutdown).
func (n *Node) FlushUsage(ctx context.Context) error {
	if n.usage == nil {
		return nil
	}
	return n.usage.Flush(ctx, n.cluster.Apply)
}

func (n *Node) rollupUsage(ctx context.Context, uc UsageConfig) {
	if !n.cluster.IsLeader() {
		return
	}
	now := time.Now()
	cmd := state.RollupUsage{Before: now.Add(-uc.HourRetention).Unix(), DropBefore: now.Add(-uc.DayRetention).Unix()}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := n.cluster.Apply(ctx, state.Command{Type: state.TypeRollupUsage, Body: cmd}); err != nil {
		n.log.Warn("could not roll up the usage", zap.Error(err))
	}
}
