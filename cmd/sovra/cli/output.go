package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/mattn/go-runewidth"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"github.com/sovra/sovra/client"
)

// maxCell is the widest a table cell is drawn without -o wide; longer
// text is cut with an ellipsis.
const maxCell = 48

// print writes v as the output flag asks: JSON or YAML of v itself (the
// client's types, so the field names are stable), or the table fill draws.
func (g *globals) print(v any, fill func(*table)) error {
	switch g.output {
	case "json":
		return writeJSON(g.io.Out, v)
	case "yaml":
		return writeYAML(g.io.Out, v)
	case "table", "wide":
		t := &table{wide: g.output == "wide", color: g.colorOn()}
		fill(t)
		return t.write(g.io.Out)
	}
	return UsageError("--output %q: use table, wide, json or yaml", g.output)
}

// checkOutput refuses an unknown --output before anything is called.
func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "wide", "json", "yaml":
		return nil
	}
	return UsageError("--output %q: use table, wide, json or yaml", g.output)
}

// callAlso is call for a command that writes, besides the common output
// formats, the extra ones (such as csv) its body writes itself.
func (g *globals) callAlso(extra []string, fn func(ctx context.Context, cl *client.Client, args []string) error) func(*cobra.Command, []string) error {
	common := g.call(fn)
	return func(c *cobra.Command, args []string) error {
		if !slices.Contains(extra, g.output) {
			if g.checkOutput() != nil {
				return UsageError("--output %q: use table, wide, json, yaml or %s", g.output, strings.Join(extra, " or "))
			}
			return common(c, args)
		}
		cl, t, err := g.client()
		if err != nil {
			return err
		}
		return g.explain(fn(c.Context(), cl, args), t)
	}
}

// structured reports whether the output is for scripts.
func (g *globals) structured() bool { return g.output == "json" || g.output == "yaml" }

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeYAML writes v's JSON form as YAML, keeping the JSON field names
// and their order.
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	blockStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	return enc.Close()
}

// blockStyle drops the flow and quoting styles JSON text parses with.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// colorOn: colour only on a terminal, never with --no-color or NO_COLOR.
func (g *globals) colorOn() bool {
	return !g.noColor && g.io.Getenv("NO_COLOR") == "" && isTerminal(g.io.Out)
}

// table draws aligned columns. A column whose name starts with "+" is
// shown only with -o wide.
type table struct {
	wide, color bool
	cols        []string
	rows        [][]string
}

func (t *table) head(cols ...string) { t.cols = cols }
func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	keep := make([]int, 0, len(t.cols))
	for i, c := range t.cols {
		if !strings.HasPrefix(c, "+") || t.wide {
			keep = append(keep, i)
		}
	}
	cells := make([][]string, 0, len(t.rows)+1)
	cells = append(cells, t.pick(keep, t.header()))
	for _, r := range t.rows {
		cells = append(cells, t.pick(keep, r))
	}
	width := make([]int, len(keep))
	for _, r := range cells {
		for i, c := range r {
			width[i] = max(width[i], runewidth.StringWidth(c))
		}
	}
	var b, line bytes.Buffer
	for ri, r := range cells {
		for i, c := range r {
			pad := ""
			if i < len(r)-1 {
				pad = strings.Repeat(" ", width[i]-runewidth.StringWidth(c)+3)
			}
			if ri > 0 && t.color {
				c = paint(t.cols[keep[i]], c)
			}
			line.WriteString(c + pad)
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
		line.Reset()
	}
	_, err := w.Write(b.Bytes())
	return err
}

func (t *table) header() []string {
	h := make([]string, len(t.cols))
	for i, c := range t.cols {
		h[i] = strings.TrimPrefix(c, "+")
	}
	return h
}

// pick keeps the shown columns of a row, each made safe to print and,
// unless wide, cut to maxCell.
func (t *table) pick(keep []int, r []string) []string {
	out := make([]string, len(keep))
	for i, k := range keep {
		if k < len(r) {
			out[i] = printable(r[k])
		}
		if !t.wide && runewidth.StringWidth(out[i]) > maxCell {
			out[i] = runewidth.Truncate(out[i], maxCell, "…")
		}
	}
	return out
}

// printable replaces control characters (a name holding escape
// sequences must not steer the terminal) and collapses newlines.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// Colours of the words of status columns.
var (
	good = map[string]bool{"ready": true, "ok": true, "closed": true, "healthy": true, "yes": true, "leader": true}
	warn = map[string]bool{"pending": true, "pulling": true, "loading": true, "cordoned": true, "draining": true, "partial": true,
		"degraded": true, "half-open": true, "joining": true, "idle": true, "unknown": true}
	bad = map[string]bool{"down": true, "failed": true, "unplaceable": true, "invalid": true, "unavailable": true, "open": true,
		"no": true, "removed": true}
)

// paint colours a cell of a status column by its first word.
func paint(col, cell string) string {
	switch strings.TrimPrefix(col, "+") {
	case "STATUS", "STATE", "HEALTH", "BREAKER", "READY", "ROLE":
	default:
		return cell
	}
	word, _, _ := strings.Cut(strings.TrimSpace(cell), " ")
	switch {
	case good[word]:
		return "\x1b[32m" + cell + "\x1b[0m"
	case warn[word]:
		return "\x1b[33m" + cell + "\x1b[0m"
	case bad[word]:
		return "\x1b[31m" + cell + "\x1b[0m"
	}
	return cell
}

// Formatting helpers for cells.

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func mark(b bool, m string) string {
	if b {
		return m
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bytesText is a size in binary units.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ago says how long ago a Unix-millisecond time was ("-" for none).
func ago(ms int64, now time.Time) string {
	if ms <= 0 {
		return "-"
	}
	return since(time.UnixMilli(ms), now)
}

func since(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + roundDur(-d)
	case d < time.Second:
		return "now"
	}
	return roundDur(d) + " ago"
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// Argument checks that end with exit code 2.

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return UsageError("%s takes no arguments, got %q (see --help)", c.CommandPath(), args)
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return UsageError("%s needs %d argument(s), got %d: usage: %s", c.CommandPath(), n, len(args), c.UseLine())
		}
		return nil
	}
}

// yamlToJSON converts a YAML (or JSON) document to JSON.
func yamlToJSON(b []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// report writes v as JSON or YAML, or for people the lines text writes.
func (g *globals) report(v any, text func(w io.Writer)) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	if g.structured() {
		return g.print(v, nil)
	}
	text(g.io.Out)
	return nil
}

// keyValues draws "key: value" lines with the values aligned; a line
// with an empty key continues the one above, indented.
type keyValues [][2]string

func (kv *keyValues) add(key, value string) { *kv = append(*kv, [2]string{key, value}) }

func (kv keyValues) write(w io.Writer) {
	width := 0
	for _, l := range kv {
		width = max(width, len(l[0])+1)
	}
	for _, l := range kv {
		key := l[0] + ":"
		if l[0] == "" {
			key = ""
		}
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-*s  %s", width, key, printable(l[1])), " "))
	}
}
