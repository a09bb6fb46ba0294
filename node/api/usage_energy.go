package api

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/energy"
)

// Energy in the usage report. Each node records the energy its GPUs spent
// on each model's output tokens, per hour (state.EnergyTotal, keyed by
// the model's Ollama tag); the usage buckets are per key and name the
// model as the client did (a deployment's name, or a tag). A usage bucket
// takes the share of its hour's, model's and serving node's energy that
// its completion tokens are of the output tokens the node counted; what
// no key's tokens account for (requests without a key, or counted in the
// next hour by the node) stays in a row without a key, under the tag.

// energyKey joins a usage bucket to its energy bucket.
type energyKey struct {
	start, hours int64
	model, node  string
}

// usageEnergy is the energy of a usage window and how to find the energy
// bucket of a usage bucket.
type usageEnergy struct {
	buckets map[energyKey]state.EnergyTotal
	// tags are the deployments' models in energy.ModelKey form, by name.
	tags map[string]string
}

// readUsageEnergy reads the energy buckets of [since, until) and the
// deployments' tags from the state.
func readUsageEnergy(s *state.State, since, until int64) usageEnergy {
	ue := usageEnergy{buckets: map[energyKey]state.EnergyTotal{}, tags: map[string]string{}}
	for _, e := range s.EnergyList(since, until) {
		ue.buckets[energyKey{e.Start, e.Hours, e.Model, e.Node}] = e
	}
	if len(ue.buckets) == 0 {
		return ue
	}
	for name, d := range s.Deployments {
		ue.tags[name] = energy.ModelKey(d.Model)
	}
	return ue
}

// keyOf is the energy key of a usage bucket.
func (ue usageEnergy) keyOf(b *state.UsageTotal) energyKey {
	tag, ok := ue.tags[b.Model]
	if !ok {
		tag = energy.ModelKey(b.Model)
	}
	return energyKey{b.Start, b.Hours, tag, b.Node}
}

// share adds each energy bucket to the rows: to each usage bucket's row
// its tokens' share, the rest to the row of no key under the tag. row
// finds or makes the row of a key, model and node.
func (ue usageEnergy) share(buckets []state.UsageTotal, row func(key, model, node string) *usageRow) {
	if len(ue.buckets) == 0 {
		return
	}
	keyed := map[energyKey]int64{}
	for i := range buckets {
		keyed[ue.keyOf(&buckets[i])] += buckets[i].CompletionTokens
	}
	for i := range buckets {
		b := &buckets[i]
		k := ue.keyOf(b)
		if e, ok := ue.buckets[k]; ok && b.CompletionTokens > 0 {
			part := float64(b.CompletionTokens) / float64(max(e.OutputTokens, keyed[k]))
			row(b.Key, b.Model, b.Node).energy.add(e, part)
		}
	}
	for _, k := range ue.sortedKeys() {
		e := ue.buckets[k]
		if rest := e.OutputTokens - keyed[k]; rest > 0 {
			row("", e.Model, e.Node).energy.add(e, float64(rest)/float64(e.OutputTokens))
		}
	}
}

// sortedKeys are the energy buckets' keys in order, so that the sums come
// out the same in every report.
func (ue usageEnergy) sortedKeys() []energyKey {
	keys := make([]energyKey, 0, len(ue.buckets))
	for k := range ue.buckets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b energyKey) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.hours, b.hours),
			cmp.Compare(a.model, b.model), cmp.Compare(a.node, b.node))
	})
	return keys
}

// energySums are the energy a row has taken, in millijoules, and the
// output tokens it was spent on.
type energySums struct {
	mj, estimatedMJ, tokens float64
}

// add takes part of an energy bucket.
func (s *energySums) add(e state.EnergyTotal, part float64) {
	s.mj += float64(e.MilliJoules) * part
	s.estimatedMJ += float64(e.EstimatedMilliJoules) * part
	s.tokens += float64(e.OutputTokens) * part
}

// fill sets a row's energy fields from its sums.
func (s energySums) fill(r *usageRow) {
	if s.tokens == 0 {
		return
	}
	r.EnergyJoules = s.mj / 1000
	r.EnergyEstimated = s.estimatedMJ > 0
	r.JoulesPer1kTokens = s.mj / s.tokens
}

// energyCSVHeader are the energy columns of the CSV report.
var energyCSVHeader = []string{"energy_joules", "energy_estimated", "joules_per_1k_tokens"}

// energyCSV are a row's energy cells, empty where none was measured.
func energyCSV(r *usageRow) []string {
	if r.JoulesPer1kTokens == 0 && r.EnergyJoules == 0 {
		return []string{"", "", ""}
	}
	return []string{strconv.FormatFloat(r.EnergyJoules, 'f', 3, 64), strconv.FormatBool(r.EnergyEstimated),
		strconv.FormatFloat(r.JoulesPer1kTokens, 'f', 1, 64)}
}
