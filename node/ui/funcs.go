package ui

import (
	"fmt"
	"html/template"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sovra/sovra/client"
)

// funcs are the templates' helpers. They return plain strings: the
// templates escape them for where they land.
var funcs = template.FuncMap{
	"bytes":          anyBytes,
	"millis":         millisText,
	"stamp":          stampText,
	"seg":            url.PathEscape,
	"tone":           tone,
	"labels":         labelList,
	"short":          short,
	"count":          countText,
	"join":           strings.Join,
	"verbText":       verbText,
	"nodeLink":       nodeLink,
	"deploymentLink": deploymentLink,
	"title":          titleCase,
	"pct":            pct,
	"percent":        func(f float64) string { return fmt.Sprintf("%.0f%%", f) },
	"fixed1":         func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"fixed2":         func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"f1":             func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"plus":           func(a, b float64) float64 { return a + b },
	"minus":          func(a, b float64) float64 { return a - b },
	"deref":          func(p *float64) float64 { return *p },
}

// anyBytes writes a byte count of any integer type.
func anyBytes(n any) string {
	switch v := n.(type) {
	case uint64:
		return bytesText(v)
	case int64:
		return bytesText(uint64(max(v, 0)))
	case int:
		return bytesText(uint64(max(v, 0)))
	}
	return fmt.Sprint(n)
}

// pct is part of whole in percent, 0 to 100.
func pct(part, whole uint64) int {
	if whole == 0 {
		return 0
	}
	return int(min(100, (part*100+whole/2)/whole))
}

// titleCase capitalises a word of ASCII.
func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// bytesText writes a byte count for people: binary units, one decimal.
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

// millisText writes a time given in Unix milliseconds (0: never).
func millisText(ms int64) string {
	if ms == 0 {
		return "—"
	}
	return stampText(time.UnixMilli(ms))
}

func stampText(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// tone classes a status for its colour; the text always says it too.
func tone(status string) string {
	switch status {
	case client.NodeReady, client.StatusOK, "holds", "placed", "fresh", "closed":
		return "ok"
	case client.StatusIdle, client.PlacementPending, "feasible", "":
		return "muted"
	case client.NodeCordoned, client.NodeDraining, client.StatusPartial, client.StatusDegraded,
		client.PlacementPulling, client.PlacementLoading, "joining", "unknown", "half-open", "drain", "remove":
		return "warn"
	}
	return "bad"
}

// labelList is a label map as sorted "k=v" strings.
func labelList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// short cuts a hash or long text to n characters.
func short(n int, s string) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// countText writes a count with thousands separators.
func countText(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
