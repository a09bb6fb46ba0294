package scheduler

import (
	"fmt"
	"github.com/sovra/sovra/models"
	"math"
	"slices"
	"strings"
)

// gib formats bytes as GiB with one decimal: "48.2 GiB".
func gib(b uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}

// describeGPUs names GPUs of n by model and memory, grouped: "2×A100
// 80GiB" or "1×H100 80GiB + 1×L40S 45GiB". pos lists positions; nil is
// all.
func describeGPUs(n *nodeView, pos []int) string {
	if pos == nil {
		pos = make([]int, len(n.n.GPUs))
		for i := range pos {
			pos[i] = i
		}
	}
	type group struct {
		name  string
		count int
	}
	var groups []group
	for _, p := range pos {
		g := n.n.GPUs[p]
		name := fmt.Sprintf("%s %dGiB", models.NormalizeGPUModel(g.Model), int(math.Round(float64(g.MemoryBytes)/(1<<30))))
		if i := slices.IndexFunc(groups, func(x group) bool { return x.name == name }); i >= 0 {
			groups[i].count++
			continue
		}
		groups = append(groups, group{name, 1})
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%d×%s", g.count, g.name)
	}
	if len(parts) == 0 {
		return "no GPUs"
	}
	return strings.Join(parts, " + ")
}

// largest returns the k positions, among pos (nil: all), of the GPUs with
// the most free memory, the first of equals first.
func largest(n *nodeView, pos []int, k int) []int {
	if pos == nil {
		pos = make([]int, len(n.free))
		for i := range pos {
			pos[i] = i
		}
	}
	sorted := slices.Clone(pos)
	slices.SortStableFunc(sorted, func(a, b int) int { return cmpDesc(n.free[a], n.free[b]) })
	return sorted[:min(k, len(sorted))]
}

// bestGPU is the position of the GPU with the most free memory.
func bestGPU(n *nodeView, pos []int) []int { return largest(n, pos, 1) }
