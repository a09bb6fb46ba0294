package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

// usageGroups are the --by values, in the order of the table's columns.
var usageGroups = []string{"key", "model", "node"}

func (g *globals) usageCmd() *cobra.Command {
	var since, until string
	var by []string
	c := &cobra.Command{
		Use:   "usage [--since 7d] [--until TIME] [--by key,model,node]",
		Short: "Show the requests and tokens used, by key, model and serving node",
		Long: `Show the usage the cluster recorded: requests, errors, prompt and completion
tokens, the average time to first token and the energy per 1,000 output tokens,
summed by key, model and serving node (or the groups --by names). Nodes write
their sums every --usage-flush (10s), so the newest requests show after that.
Usage is kept in hour buckets (day buckets after a week); a bucket that overlaps
the window counts whole.

J/1K TOKENS is the energy the serving nodes' GPUs spent per 1,000 output tokens,
in joules; "~" marks a figure partly estimated from the GPUs' rated power and
utilisation instead of measured, "-" none measured. A row without a key holds
the energy of output no key's usage accounts for.

--since and --until take a time back from now ("7d", "24h", "90m"), a date
(2026-11-01, UTC midnight) or an RFC 3339 time. -o csv writes the rows as CSV.`,
		Args: noArgs,
	}
	c.Flags().StringVar(&since, "since", "", `start of the window: "7d", "24h", a date or an RFC 3339 time (default: all)`)
	c.Flags().StringVar(&until, "until", "", "end of the window, as --since (default: now)")
	c.Flags().StringSliceVar(&by, "by", usageGroups, "what to sum by: key, model and node, comma-separated")
	c.RunE = g.callAlso([]string{"csv"}, func(ctx context.Context, cl *client.Client, _ []string) error {
		q, err := usageQuery(since, until, by, time.Now())
		if err != nil {
			return err
		}
		if g.output == "csv" {
			b, err := cl.UsageCSV(ctx, q)
			if err == nil {
				_, err = g.io.Out.Write(b)
			}
			return err
		}
		r, err := cl.Usage(ctx, q)
		if err != nil {
			return err
		}
		return g.print(r, func(t *table) { usageTable(t, r.Rows, q.GroupBy) })
	})
	return c
}

// usageQuery checks the flags and makes the query of them.
func usageQuery(since, until string, by []string, now time.Time) (client.UsageQuery, error) {
	var q client.UsageQuery
	var err error
	if q.Since, err = parseWhen(since, now); err != nil {
		return q, UsageError("--since %q: %v", since, err)
	}
	if q.Until, err = parseWhen(until, now); err != nil {
		return q, UsageError("--until %q: %v", until, err)
	}
	if !q.Until.IsZero() && !q.Until.After(q.Since) {
		return q, UsageError("--until must be after --since")
	}
	if len(by) == 0 {
		return q, UsageError("--by: give one or more of key, model and node")
	}
	for _, b := range by {
		if !slices.Contains(usageGroups, b) {
			return q, UsageError("--by %q: use key, model and node, comma-separated", b)
		}
		if !slices.Contains(q.GroupBy, b) {
			q.GroupBy = append(q.GroupBy, b)
		}
	}
	return q, nil
}

// parseWhen reads a time: "" (none), a span back from now ("7d", "24h"),
// a date (UTC midnight) or RFC 3339.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	d, err := parseSpan(s)
	if err != nil || d == 0 {
		return time.Time{}, fmt.Errorf(`want a time back from now ("7d", "24h", "90m"), a date (2026-11-01) or an RFC 3339 time`)
	}
	return now.Add(-d), nil
}

// usageTable draws the rows with the group columns first, and a total.
func usageTable(t *table, rows []client.UsageRow, by []string) {
	cols := make([]string, 0, len(by)+5)
	for _, b := range by {
		cols = append(cols, strings.ToUpper(b))
	}
	t.head(append(cols, "REQUESTS", "ERRORS", "PROMPT TOKENS", "COMPLETION TOKENS", "TTFT AVG (ms)", "J/1K TOKENS")...)
	var total client.UsageRow
	var energyTokens float64
	for _, r := range rows {
		t.row(append(usageGroupCells(r, by), usageCells(r, strconv.FormatFloat(r.TTFTMsAvg, 'f', 1, 64))...)...)
		total.Requests += r.Requests
		total.Errors += r.Errors
		total.PromptTokens += r.PromptTokens
		total.CompletionTokens += r.CompletionTokens
		total.EnergyJoules += r.EnergyJoules
		total.EnergyEstimated = total.EnergyEstimated || r.EnergyEstimated
		if r.JoulesPer1kTokens > 0 {
			energyTokens += r.EnergyJoules / r.JoulesPer1kTokens * 1000
		}
	}
	if energyTokens > 0 {
		total.JoulesPer1kTokens = total.EnergyJoules / energyTokens * 1000
	}
	// The rows carry no count of their TTFT samples, so the total has no
	// average.
	totalRow := make([]string, len(by))
	totalRow[0] = "TOTAL"
	t.row(append(totalRow, usageCells(total, "-")...)...)
}

func usageGroupCells(r client.UsageRow, by []string) []string {
	out := make([]string, len(by))
	for i, b := range by {
		out[i] = orDash(map[string]string{"key": r.Key, "model": r.Model, "node": r.Node}[b])
	}
	return out
}

func usageCells(r client.UsageRow, ttft string) []string {
	return []string{strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.Errors, 10),
		strconv.FormatInt(r.PromptTokens, 10), strconv.FormatInt(r.CompletionTokens, 10), ttft, energyCell(r)}
}

// energyCell is a row's joules per 1,000 output tokens: "-" when none
// was measured, "~" before a figure partly estimated.
func energyCell(r client.UsageRow) string {
	if r.JoulesPer1kTokens <= 0 {
		return "-"
	}
	v := strconv.FormatFloat(r.JoulesPer1kTokens, 'f', 1, 64)
	if r.EnergyEstimated {
		return "~" + v
	}
	return v
}
