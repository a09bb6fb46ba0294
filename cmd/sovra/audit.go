package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/sovra/sovra/node"
)

// registerAudit adds the audit log's flags (README, "Audit log").
func (s *settings) registerAudit(fs *pflag.FlagSet, def node.Config) {
	fs.Var((*retentionFlag)(&s.node.Audit.Retention), "audit-retention",
		"how much of the audit log the cluster keeps: a count, an age (90d, 720h) or both, comma-separated (0: no bound but the state's 100000 entries)")
	fs.DurationVar(&s.node.Audit.KeyUseReport, "key-use-report", def.Audit.KeyUseReport,
		"how often a node writes its API keys' last uses to the cluster (one write for all the keys it saw used)")
	fs.DurationVar(&s.node.Usage.Flush, "usage-flush", node.DefaultUsageFlush,
		"how often a node writes its usage batch to the cluster (a node that dies loses at most about two of these)")
	fs.DurationVar(&s.node.Usage.HourRetention, "usage-hour-retention", node.DefaultUsageHours,
		"hourly usage older than this is rolled up into days (all nodes together)")
	fs.DurationVar(&s.node.Usage.DayRetention, "usage-day-retention", node.DefaultUsageDays,
		"daily usage older than this is dropped")
}

// retentionFlag is --audit-retention.
type retentionFlag node.AuditRetention

func (r *retentionFlag) String() string {
	out := strconv.Itoa(r.Count)
	if r.Age > 0 {
		if r.Age%(24*time.Hour) == 0 {
			return fmt.Sprintf("%s,%dd", out, r.Age/(24*time.Hour))
		}
		return out + "," + r.Age.String()
	}
	return out
}

func (r *retentionFlag) Set(v string) error {
	p, err := node.ParseAuditRetention(v)
	if err != nil {
		return err
	}
	*r = retentionFlag(p)
	return nil
}

func (r *retentionFlag) Type() string { return "retention" }
