// Package energy measures what a node's GPUs spend on the tokens its
// models produce: joules per 1,000 output tokens, per model and node.
//
// Measuring. A Sampler reads every GPU's figures from nvidia-smi
// (agent.ReadPower) once per interval and turns two readings of a GPU into
// the energy it used between them (Meter), by the first of these that the
// board gives:
//
//   - counter: the difference of total_energy_consumption, the board's
//     own energy counter in mJ (Volta and newer). It integrates inside
//     the GPU, so nothing between two samples is missed.
//   - power: power.draw integrated over the interval (the mean of the
//     two readings times the time between them). A reading is a short
//     average, so bursts between samples are guessed at.
//   - estimate: the GPU's rated power times its utilisation
//     (utilization.gpu) over the interval. The rated power is the power
//     cap in force (power.limit) or, when the board gives none, the
//     board's rated TDP from a table (RatedWatts). This is a guess, not a
//     measurement: it leaves out idle draw and treats every busy
//     percent as full power. It is always reported as "estimate".
//
// A GPU that gives none of these (no power, no cap and no utilisation,
// as in MIG mode) is not measured at all.
//
// Attributing. Each interval's energy of a GPU goes to the models with a
// replica on that GPU, in proportion to the output tokens each produced
// on this node in the interval (Attribute); a replica laid out over
// several GPUs takes its share of each. Which GPUs a replica uses comes
// from the scheduler's layout account (Ollama does not say); a model not
// in it counts as on every GPU. Energy of a GPU whose models produced no
// tokens is idle energy: reported per GPU, attributed to no model.
// Output tokens are counted where the local backend answers (Counting):
// the eval_count of each finished generation.
//
// Reporting. The Sampler keeps running totals for Prometheus
// (Collector: sovra_energy_joules_total{model,node,source},
// sovra_energy_idle_joules_total, sovra_gpu_energy_joules_total,
// sovra_output_tokens_total, and gauges of joules per 1,000 output tokens
// and of the estimated share over a sliding window) and hour buckets
// that Flush writes to the replicated state (state.RecordEnergy), where
// the usage API reads them.
//
// NVML (github.com/NVIDIA/go-nvml) would read the same counters without
// starting a process per sample, but it needs cgo and the driver's
// library at run time; sovra is one static binary (CGO_ENABLED=0), so the
// package asks nvidia-smi and has no NVML dependency.
package energy
