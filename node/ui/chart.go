package ui

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The usage chart is drawn on the server as SVG: stacked bars of the
// tokens (prompt and completion) of each key and model per time bucket.
// The figures are also in a table beside it, for screen readers and for
// copying.

// Chart geometry, in SVG user units (the chart scales to its box).
const (
	chartW, chartH      = 760.0, 260.0
	plotL, plotR        = 64.0, 12.0
	plotT, plotB        = 12.0, 36.0
	maxSeries           = 6
	otherSeries         = "other"
	barGapFraction      = 0.2
	chartTicks          = 4
	chartLabelsMaxCount = 8
)

// palette is the Okabe-Ito colours (told apart with colour-blindness),
// dark enough on white; grey is the rest.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"}

const otherColor = "#8a8a8a"

// series is one key and model.
type series struct {
	Key, Model string
}

// bucket is the tokens of each series in one time span.
type bucket struct {
	Start, End time.Time
	Tokens     map[series]int64
}

// chart is what the template draws.
type chart struct {
	W, H    float64
	Bars    []bar
	YTicks  []tick
	XTicks  []tick
	Legend  []legendItem
	Empty   bool
	PlotL   float64
	PlotR   float64
	PlotB   float64
	Summary string
}

type bar struct {
	X, Y, W, H float64
	Color      string
	Title      string
}

type tick struct {
	X, Y  float64
	Label string
}

type legendItem struct {
	Color, Label string
}

// buildChart lays out buckets as stacked bars; name labels a series.
func buildChart(buckets []bucket, name func(series) string, span string) chart {
	c := chart{W: chartW, H: chartH, PlotL: plotL, PlotR: chartW - plotR, PlotB: chartH - plotB}
	top, colors := topSeries(buckets)
	stacks, peak := stackBuckets(buckets, top)
	if peak == 0 {
		c.Empty = true
		c.Summary = "No tokens were used in the " + span + "."
		return c
	}
	scale := niceCeil(peak)
	plotH := chartH - plotT - plotB
	slot := (chartW - plotL - plotR) / float64(len(buckets))
	for i, st := range stacks {
		x := plotL + float64(i)*slot + slot*barGapFraction/2
		y := chartH - plotB
		for _, s := range st {
			h := float64(s.tokens) / float64(scale) * plotH
			y -= h
			c.Bars = append(c.Bars, bar{X: x, Y: y, W: slot * (1 - barGapFraction), H: h, Color: colors[s.series],
				Title: fmt.Sprintf("%s, %s: %s tokens", bucketLabel(buckets[i]), name(s.series), countText(s.tokens))})
		}
	}
	for i := 0; i <= chartTicks; i++ {
		v := scale * int64(i) / chartTicks
		c.YTicks = append(c.YTicks, tick{Y: chartH - plotB - plotH*float64(i)/chartTicks, Label: compact(v)})
	}
	every := max(1, (len(buckets)+chartLabelsMaxCount-1)/chartLabelsMaxCount)
	for i := 0; i < len(buckets); i += every {
		c.XTicks = append(c.XTicks, tick{X: plotL + (float64(i)+0.5)*slot, Label: axisLabel(buckets[i])})
	}
	for _, s := range top {
		c.Legend = append(c.Legend, legendItem{Color: colors[s], Label: name(s)})
	}
	c.Summary = fmt.Sprintf("Tokens per key and model in the %s; the highest bucket holds %s tokens.", span, countText(peak))
	return c
}

// topSeries picks the series with the most tokens (the rest are one
// "other" series) and gives each a colour.
func topSeries(buckets []bucket) ([]series, map[series]string) {
	total := map[series]int64{}
	for _, b := range buckets {
		for s, n := range b.Tokens {
			total[s] += n
		}
	}
	all := slices.Collect(maps.Keys(total))
	slices.SortFunc(all, func(a, b series) int {
		return cmp.Or(cmp.Compare(total[b], total[a]), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Model, b.Model))
	})
	colors := map[series]string{}
	if len(all) > maxSeries {
		all = append(all[:maxSeries-1], series{Key: otherSeries})
	}
	for i, s := range all {
		colors[s] = palette[i%len(palette)]
		if s.Key == otherSeries && s.Model == "" {
			colors[s] = otherColor
		}
	}
	return all, colors
}

// stacked is one series' share of a bar.
type stacked struct {
	series series
	tokens int64
}

// stackBuckets folds each bucket's series into the top ones (in their
// order) and returns the stacks and the tallest stack.
func stackBuckets(buckets []bucket, top []series) ([][]stacked, int64) {
	in := map[series]bool{}
	for _, s := range top {
		in[s] = true
	}
	other := series{Key: otherSeries}
	var peak int64
	out := make([][]stacked, len(buckets))
	for i, b := range buckets {
		sums := map[series]int64{}
		var sum int64
		for s, n := range b.Tokens {
			if !in[s] {
				s = other
			}
			sums[s] += n
			sum += n
		}
		for _, s := range top {
			if sums[s] > 0 {
				out[i] = append(out[i], stacked{series: s, tokens: sums[s]})
			}
		}
		peak = max(peak, sum)
	}
	return out, peak
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten.
func niceCeil(n int64) int64 {
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

// compact writes a count shortly: 1.5k, 2M.
func compact(n int64) string {
	switch {
	case n >= 1_000_000_000:
		return trimZero(float64(n)/1e9) + "G"
	case n >= 1_000_000:
		return trimZero(float64(n)/1e6) + "M"
	case n >= 1_000:
		return trimZero(float64(n)/1e3) + "k"
	}
	return fmt.Sprint(n)
}

func trimZero(f float64) string {
	s := fmt.Sprintf("%.1f", f)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}

func axisLabel(b bucket) string {
	if b.End.Sub(b.Start) < 24*time.Hour {
		return b.Start.UTC().Format("15:04")
	}
	return b.Start.UTC().Format("Jan 2")
}

func bucketLabel(b bucket) string {
	if b.End.Sub(b.Start) < 24*time.Hour {
		return b.Start.UTC().Format("Jan 2 15:04") + "–" + b.End.UTC().Format("15:04 UTC")
	}
	return b.Start.UTC().Format("Mon Jan 2")
}
