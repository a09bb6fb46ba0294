package ollamasim

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/ollama/ollama/api"
)

// Embed returns the unit vector the simulator gives text for a model: a
// deterministic function of both, of the given dimension.
func Embed(model, text string, dim int) []float32 {
	r := &rng{s: hashStrings("embed", NormalizeName(model), text)}
	v := make([]float32, dim)
	var sum float64
	for i := range v {
		f := r.float()
		v[i] = float32(f)
		sum += f * f
	}
	norm := 1 / math.Max(math.Sqrt(sum), 1e-12)
	for i := range v {
		v[i] = float32(float64(v[i]) * norm)
	}
	return v
}

// embedInputs reads EmbedRequest.Input: a string or a list of strings.
func embedInputs(input any) ([]string, bool) {
	switch v := input.(type) {
	case nil:
		return nil, true
	case string:
		if v == "" {
			return nil, true
		}
		return []string{v}, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case []string:
		return v, true
	}
	return nil, false
}

func (s *Server) handleEmbed(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.EmbedRequest
	if !decode(w, r, &req) {
		return
	}
	inputs, ok := embedInputs(req.Input)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	m := s.modelFor(w, tr, req.Model, refuseEmbed)
	if m == nil || s.failFault(w, tr, req.Model) {
		return
	}
	dim := m.cfg.EmbeddingLength
	if req.Dimensions > 0 && req.Dimensions < dim {
		dim = req.Dimensions
	}
	vecs, tokens, loadDur, ok := s.embed(w, r, tr, m, s.keepAlive(req.KeepAlive), inputs, dim)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, api.EmbedResponse{
		Model: req.Model, Embeddings: vecs, TotalDuration: time.Since(tr.rec.Start),
		LoadDuration: loadDur, PromptEvalCount: tokens,
	})
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.EmbeddingRequest
	if !decode(w, r, &req) {
		return
	}
	if !validName(req.Model) {
		writeError(w, http.StatusBadRequest, "model is required")
		return
	}
	tr.rec.Model = NormalizeName(req.Model)
	m := s.lookup(req.Model)
	if m == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found, try pulling it first", req.Model))
		return
	}
	if s.failFault(w, tr, req.Model) {
		return
	}
	var inputs []string
	if req.Prompt != "" {
		inputs = []string{req.Prompt}
	}
	vecs, _, _, ok := s.embed(w, r, tr, m, s.keepAlive(req.KeepAlive), inputs, m.cfg.EmbeddingLength)
	if !ok {
		return
	}
	out := []float64{}
	if len(vecs) == 1 {
		for _, f := range vecs[0] {
			out = append(out, float64(f))
		}
	}
	writeJSON(w, http.StatusOK, api.EmbeddingResponse{Embedding: out})
}

// embed takes a slot, loads the model and computes the vectors, costing
// the time to first token plus the per-token prompt cost. It reports false
// when it has already answered (503) or the request ended.
func (s *Server) embed(w http.ResponseWriter, r *http.Request, tr *track, m *model, keepAlive time.Duration, inputs []string, dim int) ([][]float32, int, time.Duration, bool) {
	s.bind(tr, m)
	ctx := r.Context()
	if err := s.acquire(ctx, m, keepAlive); err != nil {
		if errors.Is(err, errBusy) {
			tr.rec.Error = err.Error()
			writeError(w, http.StatusServiceUnavailable, err.Error())
		} else {
			tr.cancelled = true
		}
		return nil, 0, 0, false
	}
	defer s.release(m)
	loadDur, err := s.ensureLoaded(ctx, m, keepAlive)
	if err != nil {
		tr.cancelled = true
		return nil, 0, 0, false
	}
	tokens := 0
	for _, in := range inputs {
		tokens += max(1, CountTokens(in))
	}
	tr.rec.PromptTokens = tokens
	if len(inputs) > 0 {
		if err := sleep(ctx, m.p.ttft+time.Duration(tokens)*m.p.promptCost); err != nil {
			tr.cancelled = true
			return nil, 0, 0, false
		}
		if s.chunkFault(ctx, w, tr, m, 0) {
			return nil, 0, 0, false
		}
	}
	vecs := make([][]float32, len(inputs))
	for i, in := range inputs {
		vecs[i] = Embed(m.cfg.Name, in, dim)
	}
	tr.rec.Chunks = 1
	return vecs, tokens, loadDur, true
}
