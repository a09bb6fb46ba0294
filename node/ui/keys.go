package ui

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/node/auth"
)

// keysView is the keys and usage page.
type keysView struct {
	Keys   []client.Key
	Range  string
	Ranges []usageRange
	Chart  chart
	// Totals are the usage of each key and model over the range, the
	// most tokens first.
	Totals []usageTotal
	Since  time.Time
	Until  time.Time
}

// usageRange is a choice of the chart's span.
type usageRange struct {
	ID, Label string
	Buckets   int
	Step      time.Duration
}

var usageRanges = []usageRange{
	{ID: "24h", Label: "last 24 hours", Buckets: 24, Step: time.Hour},
	{ID: "7d", Label: "last 7 days", Buckets: 7, Step: 24 * time.Hour},
	{ID: "30d", Label: "last 30 days", Buckets: 30, Step: 24 * time.Hour},
}

// usageTotal is one key and model's usage over the range.
type usageTotal struct {
	Key, KeyName, Model          string
	Requests, Errors             int64
	PromptTokens, CompletionToks int64
	// EnergyJoules is what the GPUs spent on the output tokens (0: not
	// measured); Estimated says part of it is an estimate.
	EnergyJoules float64
	Estimated    bool
}

// EnergyText is the energy per 1,000 output tokens, "~" before a figure
// that is partly estimated, "–" where nothing was measured.
func (t usageTotal) EnergyText() string {
	if t.EnergyJoules <= 0 || t.CompletionToks <= 0 {
		return "–"
	}
	v := fmt.Sprintf("%.0f J", t.EnergyJoules*1000/float64(t.CompletionToks))
	if t.Estimated {
		v = "~" + v
	}
	return v
}

func (u *UI) keys(r *req) (view, error) {
	rg := usageRanges[0]
	for _, o := range usageRanges {
		if o.ID == r.c.Query("range") {
			rg = o
		}
	}
	_, ctx, _, err := clusterRead(r)
	if err != nil {
		return view{}, err
	}
	keys, err := r.ac.Keys(ctx)
	if err != nil {
		return view{}, err
	}
	slices.SortFunc(keys, func(a, b client.Key) int { return cmp.Compare(a.ID, b.ID) })
	buckets, totals, err := u.usage(r, ctx, rg)
	if err != nil {
		return view{}, err
	}
	names := map[string]string{auth.AdminKeyID: "management token"}
	for _, k := range keys {
		if k.Name != "" {
			names[k.ID] = k.Name
		}
	}
	for i := range totals {
		totals[i].KeyName = names[totals[i].Key]
	}
	label := func(s series) string {
		if s.Key == otherSeries && s.Model == "" {
			return "other keys and models"
		}
		k := s.Key
		if n := names[k]; n != "" {
			k = n + " (" + k + ")"
		}
		return k + " · " + s.Model
	}
	v := keysView{Keys: keys, Range: rg.ID, Ranges: usageRanges, Totals: totals,
		Chart: buildChart(buckets, label, rg.Label), Since: buckets[0].Start, Until: buckets[len(buckets)-1].End}
	return view{name: "keys", title: "Keys and usage", nav: "keys", data: v}, nil
}

// usage reads the usage of each bucket of the range, by key and model,
// and sums it over the range.
func (u *UI) usage(r *req, ctx context.Context, rg usageRange) ([]bucket, []usageTotal, error) {
	end := u.cfg.Now().UTC().Truncate(rg.Step).Add(rg.Step)
	buckets := make([]bucket, rg.Buckets)
	sums := map[series]*usageTotal{}
	for i := range buckets {
		b := &buckets[i]
		b.End = end.Add(-time.Duration(rg.Buckets-1-i) * rg.Step)
		b.Start, b.Tokens = b.End.Add(-rg.Step), map[series]int64{}
		rep, err := r.ac.Usage(ctx, client.UsageQuery{Since: b.Start, Until: b.End, GroupBy: []string{"key", "model"}})
		if err != nil {
			return nil, nil, err
		}
		for _, row := range rep.Rows {
			s := series{Key: row.Key, Model: row.Model}
			b.Tokens[s] += row.PromptTokens + row.CompletionTokens
			t := sums[s]
			if t == nil {
				t = &usageTotal{Key: row.Key, Model: row.Model}
				sums[s] = t
			}
			t.Requests += row.Requests
			t.Errors += row.Errors
			t.PromptTokens += row.PromptTokens
			t.CompletionToks += row.CompletionTokens
			t.EnergyJoules += row.EnergyJoules
			t.Estimated = t.Estimated || row.EnergyEstimated
		}
	}
	totals := make([]usageTotal, 0, len(sums))
	for _, t := range sums {
		totals = append(totals, *t)
	}
	slices.SortFunc(totals, func(a, b usageTotal) int {
		return cmp.Or(cmp.Compare(b.PromptTokens+b.CompletionToks, a.PromptTokens+a.CompletionToks),
			cmp.Compare(a.Key, b.Key), cmp.Compare(a.Model, b.Model))
	})
	return buckets, totals, nil
}
