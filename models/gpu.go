package models

import "strings"

// gpuModelNoise are the upper-case words NormalizeGPUModel drops: vendor
// and brand words, and form-factor and memory-type words, which say nothing
// about which chip it is.
var gpuModelNoise = map[string]bool{
	"NVIDIA": true, "GEFORCE": true, "TESLA": true, "QUADRO": true,
	"AMD": true, "RADEON": true, "INSTINCT": true,
	"PCIE": true, "SXM": true, "SXM2": true, "SXM3": true, "SXM4": true, "SXM5": true,
	"NVL": true, "HBM2": true, "HBM2E": true, "HBM3": true, "HBM3E": true,
	"GENERATION": true,
}

// NormalizeGPUModel maps a GPU model name, as nvidia-smi prints it or as an
// operator writes it, to the short canonical form used to match GPU types:
// "NVIDIA H800", "H800" and "h800" all give "H800"; "NVIDIA H100 80GB HBM3"
// and "NVIDIA A100-SXM4-80GB" give "H100" and "A100"; "NVIDIA GeForce RTX
// 4090" and "rtx 4090" give "RTX4090".
//
// It upper-cases the name, splits it into words at spaces, '-', '_' and
// '/', drops vendor and brand words (NVIDIA, GeForce, Tesla, ...), form
// factors and memory types (SXM4, PCIe, NVL, HBM3, ...) and memory sizes
// (80GB), and joins what is left without spaces. Memory is matched by
// size, not by name. A name made only of dropped words is returned
// upper-cased without separators.
func NormalizeGPUModel(name string) string {
	words := strings.FieldsFunc(strings.ToUpper(name), func(r rune) bool {
		return r == ' ' || r == '\t' || r == '-' || r == '_' || r == '/'
	})
	var b strings.Builder
	for _, w := range words {
		if !gpuModelNoise[w] && !isMemorySize(w) {
			b.WriteString(w)
		}
	}
	if b.Len() == 0 {
		return strings.Join(words, "")
	}
	return b.String()
}

// isMemorySize reports whether an upper-case word is a size such as 80GB,
// 48G or 40GIB.
func isMemorySize(w string) bool {
	digits := len(w) - len(strings.TrimLeft(w, "0123456789"))
	if digits == 0 {
		return false
	}
	switch w[digits:] {
	case "G", "GB", "GIB", "T", "TB":
		return true
	}
	return false
}
