package energy

import "testing"

func TestRatedWatts(t *testing.T) {
	tests := []struct {
		name string
		want float64
	}{
		{"NVIDIA H100 80GB HBM3", 700},
		{"H100", 700},
		{"NVIDIA H100 PCIe", 350},
		{"NVIDIA H100 NVL", 400},
		{"NVIDIA H800", 700},
		{"NVIDIA H800 PCIe", 350},
		{"NVIDIA H200", 700},
		{"NVIDIA H200 NVL", 600},
		{"NVIDIA A100-SXM4-80GB", 400},
		{"NVIDIA A100-SXM4-40GB", 400},
		{"NVIDIA A100-PCIE-40GB", 250},
		{"NVIDIA A100 80GB PCIe", 300},
		{"NVIDIA L40S", 350},
		{"l40s", 350},
		{"NVIDIA GeForce RTX 4090", 450},
		{"RTX4090", 450},
		{"NVIDIA L40", 0},
		{"NVIDIA GeForce RTX 4080", 0},
		{"Tesla V100-SXM2-32GB", 0},
		{"", 0},
	}
	for _, tc := range tests {
		got, ok := RatedWatts(tc.name)
		if got != tc.want || ok != (tc.want > 0) {
			t.Errorf("RatedWatts(%q) = %v, %v; want %v", tc.name, got, ok, tc.want)
		}
	}
}
