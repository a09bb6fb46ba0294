package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

// Audit paging and following.
const (
	auditPage   = 1000 // the API's largest page
	auditPoll   = time.Second
	auditLayout = "2006-01-02T15:04:05Z"
)

// auditFlags are `sovra audit`'s filters.
type auditFlags struct {
	since, actor, action string
	limit                int
	follow               bool
}

func (g *globals) auditCmd() *cobra.Command {
	var f auditFlags
	c := &cobra.Command{
		Use:   "audit [--since 24h] [--actor A] [--action X] [--limit N] [--follow]",
		Short: "Show the audit log of admin actions; `audit verify` checks its hash chain",
		Long: `Show the audit log: every admin action (keys, deployments, catalog, labels, node
status, joins, removals, restores, failed admin authentication), oldest first,
with its actor (a key id, admin for the management token, node:<id>), action,
target, outcome and the client's address.

--since takes a time back from now ("7d", "24h"), a date or an RFC 3339 time.
--limit bounds the entries listed (0: all). --follow then keeps printing the
entries that come after them, about once a second, until interrupted; with
-o json each entry is one JSON object on its own line.`,
		Args: noArgs,
	}
	fs := c.Flags()
	fs.StringVar(&f.since, "since", "", `entries from this time on: "24h", "7d", a date or an RFC 3339 time`)
	fs.StringVar(&f.actor, "actor", "", "only this actor's entries (a key id, admin, node:<id>, anonymous)")
	fs.StringVar(&f.action, "action", "", "only entries of this action (put-api-key, set-node-status, auth-failed, ...)")
	fs.IntVar(&f.limit, "limit", 0, "list at most this many entries (0: all)")
	fs.BoolVarP(&f.follow, "follow", "f", false, "keep printing new entries until interrupted")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
		q, err := f.query(time.Now())
		if err != nil {
			return err
		}
		p, err := auditEntries(ctx, cl, q, f.limit)
		if err != nil {
			return err
		}
		if f.follow {
			return g.auditFollow(ctx, cl, q, p.Entries)
		}
		return g.print(p, func(t *table) { auditTable(t, p.Entries) })
	})
	c.AddCommand(g.auditVerifyCmd())
	return c
}

func (f *auditFlags) query(now time.Time) (client.AuditQuery, error) {
	q := client.AuditQuery{Actor: f.actor, Action: f.action}
	var err error
	if q.Since, err = parseWhen(f.since, now); err != nil {
		return q, UsageError("--since %q: %v", f.since, err)
	}
	if f.limit < 0 {
		return q, UsageError("--limit %d: give 0 (all) or more", f.limit)
	}
	return q, nil
}

// auditEntries pages through the entries q matches, at most limit of
// them (0: all); NextAfter is set when limit left some out.
func auditEntries(ctx context.Context, cl *client.Client, q client.AuditQuery, limit int) (*client.AuditPage, error) {
	out := &client.AuditPage{Entries: []client.AuditEntry{}}
	for {
		q.Limit = auditPage
		if limit > 0 {
			q.Limit = min(auditPage, limit-len(out.Entries))
		}
		p, err := cl.Audit(ctx, q)
		if err != nil {
			return nil, err
		}
		out.Entries = append(out.Entries, p.Entries...)
		if p.NextAfter == 0 || p.NextAfter <= q.After {
			return out, nil
		}
		if limit > 0 && len(out.Entries) >= limit {
			out.NextAfter = p.NextAfter
			return out, nil
		}
		q.After = p.NextAfter
	}
}

func auditTable(t *table, entries []client.AuditEntry) {
	t.head(auditColumns...)
	for _, e := range entries {
		t.row(auditCells(e)...)
	}
	if len(entries) == 0 {
		t.row("(none)")
	}
}

var auditColumns = []string{"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "+SOURCE", "+DETAIL", "+HASH"}

func auditCells(e client.AuditEntry) []string {
	return []string{strconv.FormatUint(e.Seq, 10), time.UnixMilli(e.Time).UTC().Format(auditLayout), e.Actor, e.Action,
		orDash(e.Target), orDash(e.Outcome), orDash(e.Source), orDash(e.Detail), orDash(e.Hash)}
}

// auditFollow prints the entries listed, then every new one q matches,
// polling about once a second, until ctx ends.
func (g *globals) auditFollow(ctx context.Context, cl *client.Client, q client.AuditQuery, listed []client.AuditEntry) error {
	w := auditLines{g: g}
	if err := w.start(); err != nil {
		return err
	}
	if err := w.write(listed); err != nil {
		return err
	}
	if n := len(listed); n > 0 {
		q.After = listed[n-1].Seq
	}
	tick := time.NewTicker(auditPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		p, err := auditEntries(ctx, cl, q, 0)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, client.ErrUnavailable) || isTimeout(err):
			fmt.Fprintf(g.io.Err, "audit --follow: %v; retrying\n", err)
			continue
		case err != nil:
			return err
		}
		if err := w.write(p.Entries); err != nil {
			return err
		}
		if n := len(p.Entries); n > 0 {
			q.After = p.Entries[n-1].Seq
		}
	}
}

// auditLines writes followed entries one per line: JSON objects, YAML
// documents, or a table's rows under its header.
type auditLines struct{ g *globals }

// auditWidths are the followed table's column widths (a longer cell
// pushes the rest of its line).
var auditWidths = []int{6, 20, 20, 24, 24, 12, 16, 24, 0}

// start writes the table's header.
func (w auditLines) start() error {
	if w.g.structured() {
		return nil
	}
	head := make([]string, len(auditColumns))
	for i, c := range auditColumns {
		head[i] = strings.TrimPrefix(c, "+")
	}
	return w.row(head)
}

func (w auditLines) write(entries []client.AuditEntry) error {
	out := w.g.io.Out
	for _, e := range entries {
		var err error
		switch w.g.output {
		case "json":
			err = writeJSONLine(out, e)
		case "yaml":
			if _, err = io.WriteString(out, "---\n"); err == nil {
				err = writeYAML(out, e)
			}
		default:
			err = w.row(auditCells(e))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// row writes a table row: the first six columns, or all with -o wide.
func (w auditLines) row(cells []string) error {
	n := 6
	if w.g.output == "wide" {
		n = len(cells)
	}
	var b strings.Builder
	for i, c := range cells[:n] {
		fmt.Fprintf(&b, "%-*s ", auditWidths[i], printable(c))
	}
	_, err := io.WriteString(w.g.io.Out, strings.TrimRight(b.String(), " ")+"\n")
	return err
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func (g *globals) auditVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain: exit 1 with the first broken link",
		Long: `Check that every entry of the audit log holds the hash of the one before and
matches its own. Someone able to rewrite a snapshot could recompute every later
hash too: keep the head hash this prints somewhere else to notice that.`,
		Args: noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			v, err := cl.VerifyAudit(ctx)
			if err != nil {
				return err
			}
			if err := g.printVerification(v); err != nil {
				return err
			}
			if !v.OK {
				return auditBroken(v)
			}
			return nil
		}),
	}
}

func auditBroken(v *client.AuditVerification) error {
	if v.Broken == nil {
		return errors.New("the audit chain is broken (the node named no link)")
	}
	return fmt.Errorf("the audit chain is broken at seq %d: %s", v.Broken.Seq, v.Broken.Reason)
}

// printVerification writes the verification: as a table, a whole
// chain's summary and the head hash to keep (a broken one is the error).
func (g *globals) printVerification(v *client.AuditVerification) error {
	switch {
	case g.structured():
		return g.print(v, nil)
	case !v.OK:
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "audit chain whole: %d entries", v.Entries)
	if v.Entries > 0 && v.Head != nil {
		fmt.Fprintf(&b, " from seq %d to %d", v.Anchor.Seq+1, v.Head.Seq)
	}
	b.WriteString("\n")
	if v.Anchor.Seq > 0 {
		fmt.Fprintf(&b, "entries up to seq %d were trimmed; anchor hash %s\n", v.Anchor.Seq, v.Anchor.Hash)
	}
	if v.Head != nil {
		fmt.Fprintf(&b, "head hash %s (keep it elsewhere to notice a rewritten log)\n", v.Head.Hash)
	}
	_, err := io.WriteString(g.io.Out, b.String())
	return err
}
