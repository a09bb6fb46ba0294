package models

import (
	"errors"
	"testing"
)

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Model)
		field  string
	}{
		{"no architecture", func(m *Model) { m.Architecture = "" }, "Architecture"},
		{"zero parameters", func(m *Model) { m.Parameters = 0 }, "Parameters"},
		{"active above total", func(m *Model) { m.Experts, m.ExpertsUsed, m.ActiveParameters = 8, 2, 8e9 }, "ActiveParameters"},
		{"zero layers", func(m *Model) { m.Layers = 0 }, "Layers"},
		{"zero embedding", func(m *Model) { m.Embedding = 0 }, "Embedding"},
		{"zero heads", func(m *Model) { m.Heads = 0 }, "Heads"},
		{"kv heads not dividing heads", func(m *Model) { m.KVHeads = 5 }, "KVHeads"},
		{"zero key size", func(m *Model) { m.HeadDimK = 0 }, "HeadDimK"},
		{"zero value size", func(m *Model) { m.HeadDimV = 0 }, "HeadDimV"},
		{"negative latent", func(m *Model) { m.KVLatentDim = -1 }, "KVLatentDim"},
		{"negative vocabulary", func(m *Model) { m.Vocab = -1 }, "Vocab"},
		{"zero context", func(m *Model) { m.ContextLength = 0 }, "ContextLength"},
		{"experts used above experts", func(m *Model) { m.Experts, m.ExpertsUsed = 2, 4 }, "ExpertsUsed"},
		{"experts without used", func(m *Model) { m.Experts = 8 }, "Experts"},
		{"unknown size and quantisation", func(m *Model) { m.FileSize, m.Quantization = 0, "Q9_X" }, "FileSize"},
		{"embedding table above parameters", func(m *Model) { m.Vocab = 2_000_000 }, "Vocab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := validModel()
			c.change(&m)
			err := m.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidModel) {
				t.Fatalf("Validate = %v, want a *FieldError wrapping ErrInvalidModel", err)
			}
			if fe.Field != c.field || fe.Model != m.Name || fe.Reason == "" {
				t.Fatalf("field error %+v, want field %s", fe, c.field)
			}
		})
	}
	// A bad name is not a field error.
	m := validModel()
	m.Name = "a b"
	var fe *FieldError
	if err := m.Validate(); !errors.Is(err, ErrInvalidName) || errors.As(err, &fe) {
		t.Fatalf("Validate of a bad name = %v", err)
	}
}
