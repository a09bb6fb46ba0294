package main

import (
	"github.com/spf13/pflag"

	"github.com/sovra/sovra/node/energy"
)

// registerEnergy adds the energy accounting's flags (docs/operations.md,
// "Energy per token").
func (s *settings) registerEnergy(fs *pflag.FlagSet) {
	fs.DurationVar(&s.node.Energy.Interval, "energy-interval", energy.DefaultInterval,
		"how often a node reads its GPUs' power and energy with nvidia-smi, to measure joules per output token (negative: off)")
	fs.DurationVar(&s.node.Energy.Window, "energy-window", energy.DefaultWindow,
		"span of the joules per 1,000 output tokens gauge of /metrics")
}
