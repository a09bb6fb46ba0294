// Package models owns sovra's knowledge of the models it serves: a catalog
// of open-weight models with the architecture figures that decide how much
// memory they need, resolution of the names clients use for them (the forms
// Ollama accepts), and an estimator of the memory a model needs when Ollama
// loads it at a given context length, slot count and KV cache type, split
// over the GPUs of one node.
//
// The catalog holds built-in entries for the families sovra targets
// (DeepSeek-V3 and R1 with its distills, Mistral, Mixtral, Codestral, Llama
// 3.x, Qwen2.5, Gemma 2) and, in a Catalog, entries an operator registers or
// builds from a running Ollama's /api/show answer with FromShow.
//
// Estimate mirrors how Ollama v0.17.4 accounts memory when it lays a model
// out over a host's GPUs; see estimate.go for the formula and the source it
// is calibrated against.
//
// The package imports the standard library only.
package models
