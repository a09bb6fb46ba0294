package models_test

import (
	"testing"

	"github.com/sovra/sovra/models"
)

func TestNormalizeGPUModel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"NVIDIA H800", "H800"},
		{"H800", "H800"},
		{"h800", "H800"},
		{"NVIDIA H100 80GB HBM3", "H100"},
		{"NVIDIA H100 PCIe", "H100"},
		{"NVIDIA H100 NVL", "H100"},
		{"NVIDIA A100-SXM4-80GB", "A100"},
		{"NVIDIA A100 80GB PCIe", "A100"},
		{"Tesla V100-SXM2-32GB", "V100"},
		{"NVIDIA L40S", "L40S"},
		{"NVIDIA A10G", "A10G"},
		{"NVIDIA GeForce RTX 4090", "RTX4090"},
		{"rtx 4090", "RTX4090"},
		{"RTX-4090", "RTX4090"},
		{"NVIDIA GeForce RTX 4090 D", "RTX4090D"},
		{"NVIDIA RTX 6000 Ada Generation", "RTX6000ADA"},
		{"NVIDIA H200", "H200"},
		{"NVIDIA GB200", "GB200"},
		{"AMD Instinct MI300X", "MI300X"},
		{"  NVIDIA   H800  ", "H800"},
		{"NVIDIA", "NVIDIA"},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := models.NormalizeGPUModel(tc.in); got != tc.want {
				t.Fatalf("NormalizeGPUModel(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
