package energy

import (
	"slices"
	"sort"
)

// Share is what one interval gives one model: the joules of its GPUs
// attributed to it, by source, and the output tokens it produced.
type Share struct {
	Joules map[Source]float64
	Tokens int64
}

// Total is the share's joules from every source.
func (s *Share) Total() float64 {
	var t float64
	for _, j := range s.Joules {
		t += j
	}
	return t
}

// Interval is one interval's energy, attributed.
type Interval struct {
	// Models are the models that produced tokens on measured GPUs.
	Models map[string]*Share
	// Idle is the energy of GPUs on which no model produced a token.
	Idle []GPUEnergy
	// Unmeasured are the tokens of models none of whose GPUs was
	// measured in the interval: they have no energy and are left out of
	// the joules per token.
	Unmeasured map[string]int64
}

// Attribute shares each GPU's energy out among the models on it, in
// proportion to the output tokens each produced in the interval. layout
// gives the GPU indexes each model's replica uses on this node; a model
// missing from it (or with no GPUs in it) counts as on every GPU. A
// model's tokens count once, however many GPUs it spans; they go into
// Unmeasured when none of its GPUs has a figure.
func Attribute(gpus []GPUEnergy, tokens map[string]int64, layout map[string][]int) Interval {
	iv := Interval{Models: map[string]*Share{}}
	producing := producingModels(tokens)
	for _, g := range gpus {
		var on []string
		var total int64
		for _, m := range producing {
			if where := layout[m]; len(where) == 0 || slices.Contains(where, g.Index) {
				on = append(on, m)
				total += tokens[m]
			}
		}
		if total == 0 {
			iv.Idle = append(iv.Idle, g)
			continue
		}
		for _, m := range on {
			sh := iv.Models[m]
			if sh == nil {
				sh = &Share{Joules: map[Source]float64{}, Tokens: tokens[m]}
				iv.Models[m] = sh
			}
			sh.Joules[g.Source] += g.Joules * float64(tokens[m]) / float64(total)
		}
	}
	for _, m := range producing {
		if iv.Models[m] == nil {
			if iv.Unmeasured == nil {
				iv.Unmeasured = map[string]int64{}
			}
			iv.Unmeasured[m] = tokens[m]
		}
	}
	return iv
}

// producingModels are the models with tokens, sorted (so that sums come
// out the same on every run).
func producingModels(tokens map[string]int64) []string {
	var out []string
	for m, n := range tokens {
		if n > 0 {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}
