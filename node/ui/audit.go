package ui

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/sovra/sovra/client"
)

// auditView is the audit log page: the latest entries that match the
// filter, newest first, and the verification of the log's hash chain.
type auditView struct {
	Verify  *client.AuditVerification
	Entries []client.AuditEntry
	Filter  auditFilter
	Periods []auditPeriod
	// Older links to the entries before these, when there are some;
	// Truncated says the log was too long to read to its end.
	Older     string
	Truncated bool
}

// auditFilter is the filter form's values.
type auditFilter struct {
	Actor, Action, Period string
	// Before, when set, shows the entries before this sequence number.
	Before uint64
}

// auditPeriod is a choice of how far back the log is shown.
type auditPeriod struct {
	ID, Label string
	Back      time.Duration // 0: the whole log
}

var auditPeriods = []auditPeriod{
	{ID: "1h", Label: "last hour", Back: time.Hour},
	{ID: "24h", Label: "last 24 hours", Back: 24 * time.Hour},
	{ID: "7d", Label: "last 7 days", Back: 7 * 24 * time.Hour},
	{ID: "all", Label: "all entries"},
}

// Audit reading: a page shows auditShown entries; the log is read in
// pages of auditRead entries, at most auditPages of them.
const (
	auditShown = 100
	auditRead  = 1000
	auditPages = 50
	maxFilter  = 128
)

func (u *UI) audit(r *req) (view, error) {
	f := auditFilter{Actor: cutText(r.c.Query("actor"), maxFilter), Action: cutText(r.c.Query("action"), maxFilter), Period: "24h"}
	q := client.AuditQuery{Actor: f.Actor, Action: f.Action, Limit: auditRead}
	for _, p := range auditPeriods {
		if p.ID == r.c.Query("period") {
			f.Period = p.ID
		}
	}
	for _, p := range auditPeriods {
		if p.ID == f.Period && p.Back > 0 {
			q.Since = u.cfg.Now().Add(-p.Back)
		}
	}
	if b, err := strconv.ParseUint(r.c.Query("before"), 10, 64); err == nil {
		f.Before = b
	}
	_, ctx, _, err := clusterRead(r)
	if err != nil {
		return view{}, err
	}
	ver, err := r.ac.VerifyAudit(ctx)
	if err != nil {
		return view{}, err
	}
	v := auditView{Verify: ver, Filter: f, Periods: auditPeriods}
	var older bool
	v.Entries, older, v.Truncated, err = latestAudit(ctx, r.ac, q, f.Before)
	if err != nil {
		return view{}, err
	}
	if older && len(v.Entries) > 0 {
		v.Older = Path + "/audit?" + url.Values{"actor": {f.Actor}, "action": {f.Action}, "period": {f.Period},
			"before": {strconv.FormatUint(v.Entries[len(v.Entries)-1].Seq, 10)}}.Encode()
	}
	return view{name: "audit", title: "Audit log", nav: "audit", data: v}, nil
}

// latestAudit reads the log's matching entries (before a sequence
// number, when not 0) and returns the latest auditShown of them, newest
// first; older says there are earlier ones, truncated that the log was
// not read to its end.
func latestAudit(ctx context.Context, ac *client.Client, q client.AuditQuery, before uint64) (out []client.AuditEntry, older, truncated bool, err error) {
	for range auditPages {
		page, err := ac.Audit(ctx, q)
		if err != nil {
			return nil, false, false, err
		}
		for _, e := range page.Entries {
			if before != 0 && e.Seq >= before {
				page.NextAfter = 0
				break
			}
			out = append(out, e)
		}
		if len(out) > auditShown {
			out, older = out[len(out)-auditShown:], true
		}
		if page.NextAfter == 0 {
			slices.Reverse(out)
			return out, older, false, nil
		}
		q.After = page.NextAfter
	}
	slices.Reverse(out)
	return out, older, true, nil
}

// cutText bounds a text to n bytes.
func cutText(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
