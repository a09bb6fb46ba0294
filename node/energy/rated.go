package energy

import (
	"slices"
	"strings"
	"unicode"
)

// RatedWatts is a GPU's rated board power (TDP) in watts, from its name as
// nvidia-smi prints it ("NVIDIA H100 80GB HBM3") or as an operator writes
// it ("H100"), for the boards sovra is used on; false for others. The
// figures are NVIDIA's maximum board power per form factor: SXM boards
// unless the name says PCIe or NVL.
//
//	H100 SXM 700, PCIe 350, NVL 400    H800 SXM 700, PCIe 350
//	H200 SXM 700, NVL 600              A100 SXM 400, PCIe 40GB 250, 80GB PCIe 300
//	L40S 350                           GeForce RTX 4090 450
func RatedWatts(model string) (float64, bool) {
	w := nameWords(model)
	has := func(s string) bool { return slices.Contains(w, s) }
	pcie, nvl := has("PCIE"), has("NVL")
	switch {
	case has("H100") && pcie:
		return 350, true
	case has("H100") && nvl:
		return 400, true
	case has("H100"), has("H800") && !pcie, has("H200") && !nvl:
		return 700, true
	case has("H800"):
		return 350, true
	case has("H200"):
		return 600, true
	case has("A100") && pcie && has("80GB"):
		return 300, true
	case has("A100") && pcie:
		return 250, true
	case has("A100"):
		return 400, true
	case has("L40S"):
		return 350, true
	case has("4090") && has("RTX"), has("RTX4090"):
		return 450, true
	}
	return 0, false
}

// nameWords splits a GPU name into upper-case words of letters and digits.
func nameWords(name string) []string {
	return strings.FieldsFunc(strings.ToUpper(name), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}
