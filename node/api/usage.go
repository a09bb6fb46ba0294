package api

import (
	"encoding/csv"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/cluster/state"
	nodeusage "github.com/sovra/sovra/node/usage"
)

// recordUsage counts an inference request that ended (a POST naming a
// model) in the usage of its key, on the node the client reached.
func (s *Server) recordUsage(ri *reqInfo, status int) {
	if s.cfg.Usage == nil || ri.forwarded || ri.model == "" || ri.method != fiber.MethodPost || ri.keyID == "" {
		return
	}
	s.cfg.Usage.Add(nodeusage.Event{Time: ri.start, Key: ri.keyID, Model: ri.model, Node: ri.decision.View().Node,
		PromptTokens: int64(ri.promptTokens), Completion: int64(ri.completionTokens), Error: status >= 400, TTFT: ri.ttft})
}

// usageRow is one row of GET /admin/v1/usage: the sums of the buckets of
// one group.
type usageRow struct {
	Key              string  `json:"key,omitempty"`
	Model            string  `json:"model,omitempty"`
	Node             string  `json:"node,omitempty"`
	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	TTFTMsAvg        float64 `json:"ttft_ms_avg"`
	// The energy the serving GPUs spent on the group's output tokens
	// (usage_energy.go); absent where none was measured.
	EnergyJoules      float64 `json:"energy_joules,omitempty"`
	EnergyEstimated   bool    `json:"energy_estimated,omitempty"`
	JoulesPer1kTokens float64 `json:"joules_per_1k_tokens,omitempty"`
	ttftMs, ttftN     int64
	energy            energySums
}

// usageQuery is GET /admin/v1/usage's query.
type usageQuery struct {
	since, until int64
	by           map[string]bool
	csv          bool
}

func parseUsageQuery(c *fiber.Ctx) (usageQuery, error) {
	q := usageQuery{by: map[string]bool{}}
	var err error
	if q.since, err = parseUsageTime("since", c.Query("since")); err != nil {
		return q, err
	}
	if q.until, err = parseUsageTime("until", c.Query("until")); err != nil {
		return q, err
	}
	if q.until != 0 && q.until <= q.since {
		return q, badUsage("until", "until must be after since")
	}
	for _, g := range strings.Split(c.Query("group_by", "key,model,node"), ",") {
		switch g = strings.TrimSpace(g); g {
		case "key", "model", "node":
			q.by[g] = true
		case "":
		default:
			return q, badUsage("group_by", "group_by %q: use key, model and node, comma-separated", cut(g))
		}
	}
	switch f := c.Query("format"); f {
	case "csv":
		q.csv = true
	case "json":
	case "":
		q.csv = strings.Contains(c.Get(fiber.HeaderAccept), "text/csv")
	default:
		return q, badUsage("format", "format %q: use json or csv", cut(f))
	}
	return q, nil
}

// parseUsageTime reads an RFC 3339 time or Unix seconds ("": 0).
func parseUsageTime(name, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, badUsage(name, "%s %q: want an RFC 3339 time or Unix seconds", name, cut(v))
	}
	return t.Unix(), nil
}

// usageRoutes mounts GET /admin/v1/usage: the usage of the buckets that
// overlap [since, until) (hours, or days once rolled up), grouped.
func usageRoutes(a fiber.Router, cl Cluster) {
	a.Get("/usage", func(c *fiber.Ctx) error {
		q, err := parseUsageQuery(c)
		if err != nil {
			return err
		}
		var buckets []state.UsageTotal
		var energy usageEnergy
		if err := cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
			buckets = s.UsageList(q.since, q.until)
			energy = readUsageEnergy(s, q.since, q.until)
		}); err != nil {
			return err
		}
		rows := q.group(buckets, energy)
		if q.csv {
			c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
			return c.SendString(usageCSV(rows))
		}
		return c.JSON(fiber.Map{"since": q.since, "until": q.until, "rows": rows})
	})
}

func (q usageQuery) group(buckets []state.UsageTotal, energy usageEnergy) []*usageRow {
	byKey := map[string]*usageRow{}
	var rows []*usageRow
	row := func(key, model, node string) *usageRow {
		g := usageRow{}
		if q.by["key"] {
			g.Key = key
		}
		if q.by["model"] {
			g.Model = model
		}
		if q.by["node"] {
			g.Node = node
		}
		k := g.Key + "\x00" + g.Model + "\x00" + g.Node
		r := byKey[k]
		if r == nil {
			r = &g
			byKey[k] = r
			rows = append(rows, r)
		}
		return r
	}
	for _, b := range buckets {
		r := row(b.Key, b.Model, b.Node)
		r.Requests += b.Requests
		r.Errors += b.Errors
		r.PromptTokens += b.PromptTokens
		r.CompletionTokens += b.CompletionTokens
		r.ttftMs, r.ttftN = r.ttftMs+b.TTFTMs, r.ttftN+b.TTFTCount
	}
	energy.share(buckets, row)
	for _, r := range rows {
		if r.ttftN > 0 {
			r.TTFTMsAvg = float64(r.ttftMs) / float64(r.ttftN)
		}
		r.energy.fill(r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		return a.Key+"\x00"+a.Model+"\x00"+a.Node < b.Key+"\x00"+b.Model+"\x00"+b.Node
	})
	if rows == nil {
		rows = []*usageRow{}
	}
	return rows
}

func usageCSV(rows []*usageRow) string {
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write(append([]string{"key", "model", "node", "requests", "errors", "prompt_tokens", "completion_tokens", "ttft_ms_avg"},
		energyCSVHeader...))
	for _, r := range rows {
		_ = w.Write(append([]string{r.Key, r.Model, r.Node, fmt.Sprint(r.Requests), fmt.Sprint(r.Errors),
			fmt.Sprint(r.PromptTokens), fmt.Sprint(r.CompletionTokens), strconv.FormatFloat(r.TTFTMsAvg, 'f', 1, 64)},
			energyCSV(r)...))
	}
	w.Flush()
	return b.String()
}

// badUsage refuses a usage query (400, code invalid_usage_query).
func badUsage(param, format string, args ...any) *Error {
	e := invalidParam(param, format, args...)
	e.Code = "invalid_usage_query"
	return e
}
