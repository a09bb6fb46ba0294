package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ticker"
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/auth"
)

// AuditConfig configures the audit log and the API keys' bookkeeping.
type AuditConfig struct {
	// Retention bounds the audit log; the leader trims past it.
	Retention AuditRetention
	// TrimEvery is how often the leader looks at the retention.
	TrimEvery time.Duration
	// Flush is how often failed admin authentications are written.
	Flush time.Duration
	// KeyUseReport is how often a node writes its keys' last uses (one
	// command for all the keys it saw used, none when none was).
	KeyUseReport time.Duration
}

// AuditRetention is how much of the audit log is kept: at most Count
// entries (0: no bound but the state's, state.MaxAuditEntries) and none
// older than Age (0: no bound).
type AuditRetention struct {
	Count int
	Age   time.Duration
}

func defaultAuditConfig() AuditConfig {
	return AuditConfig{Retention: AuditRetention{Count: 20000, Age: 90 * 24 * time.Hour}, TrimEvery: time.Minute,
		Flush: api.DefaultAuditFlush, KeyUseReport: 30 * time.Second}
}

func (c AuditConfig) validate() error {
	switch {
	case c.Retention.Count < 0 || c.Retention.Age < 0:
		return errors.New("--audit-retention must not be negative")
	case c.TrimEvery <= 0 || c.Flush <= 0 || c.KeyUseReport <= 0:
		return errors.New("audit and key-use intervals must be positive")
	}
	return nil
}

// ParseAuditRetention reads --audit-retention: a count ("20000"), an age
// ("90d", "720h") or both, comma-separated ("20000,90d").
func ParseAuditRetention(s string) (AuditRetention, error) {
	var r AuditRetention
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if n, err := strconv.Atoi(part); err == nil && n >= 0 {
			r.Count = n
			continue
		}
		d, err := parseAge(part)
		if err != nil || d < 0 {
			return AuditRetention{}, fmt.Errorf("--audit-retention %q: want a count, an age (90d, 720h) or both, comma-separated", s)
		}
		r.Age = d
	}
	return r, nil
}

func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		return time.Duration(n) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}

// cut is the sequence number before which entries go, or 0 when none
// does.
func (r AuditRetention) cut(entries []state.AuditEntry, now time.Time) uint64 {
	n, drop := len(entries), 0
	if r.Count > 0 && n > r.Count {
		drop = n - r.Count
	}
	if r.Age > 0 {
		oldest := now.Add(-r.Age).UnixMilli()
		for drop < n && entries[drop].Time < oldest {
			drop++
		}
	}
	switch {
	case drop == 0:
		return 0
	case drop == n:
		return entries[n-1].Seq + 1
	}
	return entries[drop].Seq
}

// keyConfig gives the API the cluster's API keys: looked up in the
// replicated state by a hash keyed with the cluster token.
func (n *Node) keyConfig(cfg *api.Config) {
	cfg.AuditFlush = n.cfg.Audit.Flush
	if n.cluster == nil {
		return
	}
	h, err := auth.NewHasher(n.cfg.Cluster.Token)
	if err != nil {
		return // validate requires the token in a cluster
	}
	n.stateKeys = auth.NewStateKeys(n.cluster.Machine(), h, nil)
	cfg.KeyHasher = h
	cfg.Keys = n.stateKeys
	if n.cfg.Keys != nil {
		cfg.Keys = auth.Keys{n.cfg.Keys, n.stateKeys}
	}
}

// runKeys runs the key-use reports and the audit retention until ctx
// ends.
func (n *Node) runKeys(ctx context.Context) {
	n.runWG.Add(2)
	go func() {
		defer n.runWG.Done()
		ticker.Every(ctx, n.cfg.Audit.KeyUseReport, n.reportKeyUse)
	}()
	go func() {
		defer n.runWG.Done()
		ticker.Every(ctx, n.cfg.Audit.TrimEvery, n.trimAudit)
	}()
}

// reportKeyUse writes the last uses this node saw since its last report:
// one raft write per interval at most, whatever the request rate.
func (n *Node) reportKeyUse(ctx context.Context) {
	if n.stateKeys == nil {
		return
	}
	used := n.stateKeys.TakeUsed()
	if len(used) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := n.cluster.Apply(ctx, state.Command{Type: state.TypeTouchAPIKeys, Flags: state.FlagIgnorable,
		Body: state.TouchAPIKeys{Node: n.cfg.NodeID, Times: used}})
	if err != nil && ctx.Err() == nil {
		n.log.Warn("could not report the keys' last uses", zap.Int("keys", len(used)), zap.Error(err))
	}
}

// trimAudit has the leader trim the audit log to the retention.
func (n *Node) trimAudit(ctx context.Context) {
	if !n.cluster.IsLeader() {
		return
	}
	var before uint64
	now := time.Now()
	n.cluster.Machine().Read(func(s *state.State) { before = n.cfg.Audit.Retention.cut(s.Audit, now) })
	if before == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec := state.AuditRecord{Time: now.UnixMilli(), Actor: "node:" + n.cfg.NodeID, Action: state.TypeTrimAudit.String(),
		Detail: "retention"}
	if _, err := n.cluster.Apply(ctx, state.Command{Type: state.TypeTrimAudit, Body: state.TrimAudit{Before: before}, Audit: &rec}); err != nil {
		n.log.Warn("could not trim the audit log", zap.Error(err))
	}
}
