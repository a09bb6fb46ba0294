package ollamasim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	ollamamodel "github.com/ollama/ollama/types/model"
)

// errBusy is Ollama's answer when the queue is full (its ErrMaxQueue).
var errBusy = errors.New("server busy, please try again.  maximum pending requests exceeded")

// model is the run-time state of one known model, present or only
// pullable. All fields after p are guarded by Server.mu.
type model struct {
	cfg    ModelConfig
	p      params
	caps   []string
	digest string

	slots   chan struct{} // one token per running generation
	loadSem chan struct{} // serialises loading

	present    bool
	modifiedAt time.Time
	loaded     bool
	expiresAt  time.Time
	keepAlive  time.Duration

	running, queued, inFlight int
	peakRunning               int
	requests, cancelled       int64
	loads                     int64
	prefixes                  []prefixEntry
}

func newModel(mc ModelConfig, p params) *model {
	return &model{
		cfg:     mc,
		p:       p,
		caps:    capabilities(mc),
		digest:  digestOf("manifest", mc.Name),
		slots:   make(chan struct{}, p.parallel),
		loadSem: make(chan struct{}, 1),
	}
}

// loadedAt reports whether the model counts as loaded at now.
func (m *model) loadedAt(now time.Time) bool {
	return m.loaded && (m.running > 0 || now.Before(m.expiresAt))
}

func (m *model) details() api.ModelDetails {
	return api.ModelDetails{
		Format:            "gguf",
		Family:            m.cfg.Family,
		Families:          []string{m.cfg.Family},
		ParameterSize:     m.cfg.ParameterSize,
		QuantizationLevel: m.cfg.Quantization,
	}
}

// lookup returns a present model by any spelling of its name, or nil.
func (s *Server) lookup(name string) *model {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[nameKey(name)]
	if m == nil || !m.present {
		return nil
	}
	return m
}

// AddModel makes a model present, as if it had been pulled; an existing
// model of that name is replaced.
func (s *Server) AddModel(mc ModelConfig) {
	mc, p := resolve(&s.cfg, mc)
	m := newModel(mc, p)
	m.present = true
	m.modifiedAt = time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models[nameKey(mc.Name)] = m
	s.notifyLocked()
}

// expireLocked unloads an idle model whose keep-alive has passed.
func (s *Server) expireLocked(m *model, now time.Time) {
	if m.loaded && !m.loadedAt(now) {
		m.loaded = false
	}
}

// keepAlive is the keep-alive a request asks for.
func (s *Server) keepAlive(d *api.Duration) time.Duration {
	if d == nil {
		return s.cfg.KeepAlive
	}
	return d.Duration
}

// acquire takes one of the model's parallel slots, waiting in its queue if
// all are busy. It fails with errBusy at once when the queue is full.
func (s *Server) acquire(ctx context.Context, m *model, keepAlive time.Duration) error {
	s.mu.Lock()
	s.expireLocked(m, time.Now())
	m.keepAlive = keepAlive
	select {
	case m.slots <- struct{}{}:
		m.running++
		m.peakRunning = max(m.peakRunning, m.running)
		s.notifyLocked()
		s.mu.Unlock()
		return nil
	default:
	}
	if m.queued >= m.p.maxQueue {
		s.mu.Unlock()
		return errBusy
	}
	m.queued++
	s.notifyLocked()
	s.mu.Unlock()

	var err error
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m.queued--
	if err == nil {
		s.expireLocked(m, time.Now())
		m.keepAlive = keepAlive
		m.running++
		m.peakRunning = max(m.peakRunning, m.running)
	}
	s.notifyLocked()
	return err
}

// release gives a slot back and starts the model's keep-alive countdown.
func (s *Server) release(m *model) {
	s.mu.Lock()
	m.running--
	m.expiresAt = time.Now().Add(m.keepAlive)
	s.notifyLocked()
	s.mu.Unlock()
	<-m.slots
}

// ensureLoaded loads the model if needed and returns the time spent.
func (s *Server) ensureLoaded(ctx context.Context, m *model, keepAlive time.Duration) (time.Duration, error) {
	start := time.Now()
	if s.isLoaded(m, keepAlive) {
		return time.Since(start), nil
	}
	select {
	case m.loadSem <- struct{}{}:
	case <-ctx.Done():
		return time.Since(start), ctx.Err()
	}
	defer func() { <-m.loadSem }()
	if s.isLoaded(m, keepAlive) {
		return time.Since(start), nil
	}
	if err := sleep(ctx, m.p.load); err != nil {
		return time.Since(start), err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m.loaded = true
	m.loads++
	m.expiresAt = time.Now().Add(keepAlive)
	s.notifyLocked()
	return time.Since(start), nil
}

// isLoaded reports whether m is loaded, refreshing its keep-alive if so.
func (s *Server) isLoaded(m *model, keepAlive time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.expireLocked(m, now)
	if !m.loaded {
		return false
	}
	if m.running == 0 {
		m.expiresAt = now.Add(keepAlive)
	}
	return true
}

// unload evicts a model, as keep_alive 0 with an empty prompt does.
func (s *Server) unload(m *model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.loaded = false
	m.expiresAt = time.Time{}
	s.notifyLocked()
}

func (s *Server) handleTags(w http.ResponseWriter, _ *http.Request, _ *track) {
	s.mu.Lock()
	var present []*model
	for _, m := range s.models {
		if m.present {
			present = append(present, m)
		}
	}
	slices.SortFunc(present, func(a, b *model) int {
		return cmp.Or(b.modifiedAt.Compare(a.modifiedAt), cmp.Compare(a.cfg.Name, b.cfg.Name))
	})
	list := make([]api.ListModelResponse, 0, len(present))
	for _, m := range present {
		list = append(list, api.ListModelResponse{
			Name: m.cfg.Name, Model: m.cfg.Name, ModifiedAt: m.modifiedAt,
			Size: m.cfg.Size, Digest: m.digest, Details: m.details(),
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, api.ListResponse{Models: list})
}

func (s *Server) handlePs(w http.ResponseWriter, _ *http.Request, _ *track) {
	now := time.Now()
	s.mu.Lock()
	list := []api.ProcessModelResponse{}
	for _, m := range s.models {
		s.expireLocked(m, now)
		if !m.loaded {
			continue
		}
		exp := m.expiresAt
		if m.running > 0 {
			exp = now.Add(m.keepAlive)
		}
		list = append(list, api.ProcessModelResponse{
			Name: m.cfg.Name, Model: m.cfg.Name, Size: m.cfg.VRAM, SizeVRAM: m.cfg.VRAM,
			Digest: m.digest, Details: m.details(), ExpiresAt: exp, ContextLength: m.cfg.ContextLength,
		})
	}
	s.mu.Unlock()
	slices.SortStableFunc(list, func(a, b api.ProcessModelResponse) int {
		return cmp.Or(b.ExpiresAt.Compare(a.ExpiresAt), cmp.Compare(a.Name, b.Name))
	})
	writeJSON(w, http.StatusOK, api.ProcessResponse{Models: list})
}

func (s *Server) handleShow(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.ShowRequest
	if !decode(w, r, &req) {
		return
	}
	name := cmp.Or(req.Model, req.Name)
	if name == "" {
		writeError(w, http.StatusBadRequest, "model is required")
		return
	}
	if !validName(name) {
		e := refuseAsUnqualified(name)
		writeError(w, e.status, e.msg)
		return
	}
	tr.rec.Model = NormalizeName(name)
	m := s.lookup(name)
	if m == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", name))
		return
	}
	s.mu.Lock()
	modified := m.modifiedAt
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, showResponse(m, modified))
}

func showResponse(m *model, modified time.Time) api.ShowResponse {
	caps := make([]ollamamodel.Capability, len(m.caps))
	for i, c := range m.caps {
		caps[i] = ollamamodel.Capability(c)
	}
	return api.ShowResponse{
		Modelfile:    fmt.Sprintf("# Modelfile generated by \"ollama show\"\nFROM %s\nTEMPLATE {{ .Prompt }}\n", m.cfg.Name),
		Parameters:   "temperature 0.8",
		Template:     "{{ .Prompt }}",
		Details:      m.details(),
		ModelInfo:    modelInfo(m.cfg),
		Capabilities: caps,
		ModifiedAt:   modified,
	}
}

// modelInfo is the model_info of /api/show: the GGUF keys, numbers as
// Ollama writes them (general.file_type is llama.cpp's file type number).
func modelInfo(cfg ModelConfig) map[string]any {
	arch := cfg.Family
	info := map[string]any{
		"general.architecture":            arch,
		"general.parameter_count":         parseParamCount(cfg.ParameterSize),
		arch + ".context_length":          cfg.ContextLength,
		arch + ".embedding_length":        cfg.EmbeddingLength,
		arch + ".block_count":             cfg.Layers,
		arch + ".attention.head_count":    cfg.Heads,
		arch + ".attention.head_count_kv": cfg.KVHeads,
		arch + ".attention.key_length":    cfg.EmbeddingLength / cfg.Heads,
		arch + ".attention.value_length":  cfg.EmbeddingLength / cfg.Heads,
	}
	if ft, ok := fileTypes[strings.ToUpper(cfg.Quantization)]; ok {
		info["general.file_type"] = ft
	}
	return info
}

// fileTypes are llama.cpp's file type numbers of the quantisations Ollama
// names.
var fileTypes = map[string]int{
	"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
	"Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14,
	"Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32,
}

// parseParamCount turns "1.2B" or "137M" into a parameter count.
func parseParamCount(s string) int64 {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "B"):
		mult = 1e9
	case strings.HasSuffix(s, "M"):
		mult = 1e6
	case strings.HasSuffix(s, "K"):
		mult = 1e3
	}
	f, err := strconv.ParseFloat(strings.TrimRight(s, "BMK"), 64)
	if err != nil {
		return 0
	}
	return int64(f * mult)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.DeleteRequest
	if !decode(w, r, &req) {
		return
	}
	name := cmp.Or(req.Model, req.Name)
	if !validName(name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("name %q is invalid", name))
		return
	}
	tr.rec.Model = NormalizeName(name)
	if !s.remove(name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", name))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// remove deletes a present model (it stays pullable) and reports whether
// there was one.
func (s *Server) remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[nameKey(name)]
	if m == nil || !m.present {
		return false
	}
	m.present, m.loaded, m.prefixes = false, false, nil
	s.notifyLocked()
	return true
}
