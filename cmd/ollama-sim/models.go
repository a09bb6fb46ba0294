package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sovra/sovra/internal/ollamasim"
)

// modelSpec is a model in a --models file: a ModelConfig whose durations
// are written as Go durations ("150ms") rather than nanoseconds.
type modelSpec struct {
	ollamasim.ModelConfig
	TTFT            string `json:"ttft,omitempty"`
	PromptTokenCost string `json:"prompt_token_cost,omitempty"`
	CachedTokenCost string `json:"cached_token_cost,omitempty"`
	LoadDuration    string `json:"load_duration,omitempty"`
}

func (s modelSpec) config() (ollamasim.ModelConfig, error) {
	mc := s.ModelConfig
	for _, d := range []struct {
		text string
		dst  *time.Duration
	}{
		{s.TTFT, &mc.TTFT}, {s.PromptTokenCost, &mc.PromptTokenCost},
		{s.CachedTokenCost, &mc.CachedTokenCost}, {s.LoadDuration, &mc.LoadDuration},
	} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil {
			return mc, fmt.Errorf("model %s: %w", mc.Name, err)
		}
		*d.dst = v
	}
	if ollamasim.NormalizeName(mc.Name) == "" {
		return mc, fmt.Errorf("model without a name")
	}
	return mc, nil
}

// parseModels reads a --models or --registry value: "default", "none",
// a comma-separated list of names, or @file with a JSON list of models.
func parseModels(spec string, defaults []ollamasim.ModelConfig) ([]ollamasim.ModelConfig, error) {
	switch spec = strings.TrimSpace(spec); {
	case spec == "default":
		return defaults, nil
	case spec == "none" || spec == "":
		return []ollamasim.ModelConfig{}, nil
	case strings.HasPrefix(spec, "@"):
		return readModels(spec[1:])
	}
	out := []ollamasim.ModelConfig{}
	for _, name := range strings.Split(spec, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, modelNamed(name))
		}
	}
	return out, nil
}

func readModels(path string) ([]ollamasim.ModelConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var specs []modelSpec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]ollamasim.ModelConfig, 0, len(specs))
	for _, s := range specs {
		mc, err := s.config()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, mc)
	}
	return out, nil
}

// modelNamed is the well-known model of that name, or a generic one
// (an embedding model if its name says so).
func modelNamed(name string) ollamasim.ModelConfig {
	key := ollamasim.NormalizeName(name)
	for _, mc := range append(ollamasim.DefaultModels(), ollamasim.DefaultRegistry()...) {
		if ollamasim.NormalizeName(mc.Name) == key {
			return mc
		}
	}
	lower := strings.ToLower(name)
	return ollamasim.ModelConfig{
		Name:      name,
		Embedding: strings.Contains(lower, "embed") || strings.Contains(lower, "minilm"),
	}
}

// splitList reads a comma-separated list of model names into a set of
// canonical names.
func splitList(s string) map[string]bool {
	set := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		if n := ollamasim.NormalizeName(name); n != "" {
			set[n] = true
		}
	}
	return set
}
