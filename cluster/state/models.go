package state

import (
	"fmt"

	"github.com/sovra/sovra/models"
)

// ModelSpec is a model registered with the cluster: the figures the
// scheduler sizes its replicas by, for an Ollama tag that is not among the
// built-in catalog entries. The fields are those of models.Model (see
// there for their meaning), as plain data. It holds no reference types, so
// a copy is a deep copy.
type ModelSpec struct {
	// Name is the Ollama tag in the catalog's key form: lower case, short,
	// with its tag ("tiny:latest", "acme/coder:7b"). The registry files
	// the spec under it.
	Name             string `json:"name"`
	Family           string `json:"family,omitempty"`
	Architecture     string `json:"architecture"`
	BaseModel        string `json:"base_model,omitempty"`
	Parameters       uint64 `json:"parameters"`
	ActiveParameters uint64 `json:"active_parameters,omitempty"`
	Experts          int    `json:"experts,omitempty"`
	ExpertsUsed      int    `json:"experts_used,omitempty"`
	Quantization     string `json:"quantization,omitempty"`
	FileSize         uint64 `json:"file_size,omitempty"`
	Layers           int    `json:"layers"`
	Embedding        int    `json:"embedding"`
	Heads            int    `json:"heads"`
	KVHeads          int    `json:"kv_heads"`
	HeadDimK         int    `json:"head_dim_k"`
	HeadDimV         int    `json:"head_dim_v"`
	KVLatentDim      int    `json:"kv_latent_dim,omitempty"`
	Vocab            int    `json:"vocab,omitempty"`
	TiedEmbeddings   bool   `json:"tied_embeddings,omitempty"`
	ContextLength    int    `json:"context_length"`
	License          string `json:"license,omitempty"`
	// Source says where the figures come from: an operator, or a node's
	// Ollama (/api/show).
	Source        string `json:"source,omitempty"`
	CreatedIndex  uint64 `json:"created_index"`
	ModifiedIndex uint64 `json:"modified_index"`
}

// Model returns the spec as the models package sizes it.
func (m ModelSpec) Model() models.Model {
	return models.Model{
		Name: m.Name, Family: m.Family, Architecture: m.Architecture, BaseModel: m.BaseModel,
		Parameters: m.Parameters, ActiveParameters: m.ActiveParameters, Experts: m.Experts, ExpertsUsed: m.ExpertsUsed,
		Quantization: m.Quantization, FileSize: m.FileSize,
		Layers: m.Layers, Embedding: m.Embedding, Heads: m.Heads, KVHeads: m.KVHeads,
		HeadDimK: m.HeadDimK, HeadDimV: m.HeadDimV, KVLatentDim: m.KVLatentDim, Vocab: m.Vocab,
		TiedEmbeddings: m.TiedEmbeddings, ContextLength: m.ContextLength, License: m.License, Source: m.Source,
	}
}

// SpecOf returns the figures of m as the registry stores them. Aliases are
// not kept: a registered model answers to its name alone.
func SpecOf(m models.Model) ModelSpec {
	return ModelSpec{
		Name: m.Name, Family: m.Family, Architecture: m.Architecture, BaseModel: m.BaseModel,
		Parameters: m.Parameters, ActiveParameters: m.ActiveParameters, Experts: m.Experts, ExpertsUsed: m.ExpertsUsed,
		Quantization: m.Quantization, FileSize: m.FileSize,
		Layers: m.Layers, Embedding: m.Embedding, Heads: m.Heads, KVHeads: m.KVHeads,
		HeadDimK: m.HeadDimK, HeadDimV: m.HeadDimV, KVLatentDim: m.KVLatentDim, Vocab: m.Vocab,
		TiedEmbeddings: m.TiedEmbeddings, ContextLength: m.ContextLength, License: m.License, Source: m.Source,
	}
}

// RegisteredModel finds a registered model by any name form Ollama
// accepts, or returns nil.
func (s *State) RegisteredModel(name string) *ModelSpec {
	if len(s.Models) == 0 {
		return nil
	}
	key, err := models.NormalizeName(name)
	if err != nil {
		return nil
	}
	return s.Models[key]
}

// checkModelSpec says what is wrong with a registered model filed under
// key ("" for one about to be filed), or returns nil. Apply and Decode
// hold registered models to the same rules. Apply being deterministic
// depends on them: models.Validate and models.NormalizeName may accept
// more in a later version, never less, or replicas of two versions would
// apply the same RegisterModel differently and a snapshot would be
// refused.
func checkModelSpec(key string, m *ModelSpec) error {
	norm, err := models.NormalizeName(m.Name)
	switch {
	case err != nil:
		return err
	case norm != m.Name:
		return fmt.Errorf("model name %q is not in key form %q", m.Name, norm)
	case key != "" && key != m.Name:
		return fmt.Errorf("model %q is filed under %q", m.Name, key)
	}
	return m.Model().Validate()
}

func (s *State) registerModel(index uint64, c *RegisterModel) Outcome {
	m := c.Model
	key, err := models.NormalizeName(m.Name)
	if err != nil {
		return fail("invalid", "%v", err)
	}
	m.Name = key
	if err := checkModelSpec("", &m); err != nil {
		return fail("invalid", "%v", err)
	}
	old, exists := s.Models[key]
	if exists && c.Create {
		return fail("exists", "model %q is registered already", key)
	}
	m.CreatedIndex, m.ModifiedIndex = index, index
	if exists {
		m.CreatedIndex = old.CreatedIndex
	}
	s.Models[key] = &m
	return value(m)
}

func (s *State) unregisterModel(_ uint64, c *UnregisterModel) Outcome {
	key, err := models.NormalizeName(c.Name)
	if err != nil {
		return fail("invalid", "%v", err)
	}
	if _, ok := s.Models[key]; !ok {
		return fail("not_found", "model %q is not registered", key)
	}
	delete(s.Models, key)
	return Outcome{}
}
