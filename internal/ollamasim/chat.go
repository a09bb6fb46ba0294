package ollamasim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
)

// httpError is an error answer: status and message.
type httpError struct {
	status int
	msg    string
}

func badRequest(format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// modelFor resolves the model of an inference request, answering a name
// that Ollama's parser refuses (an empty one too) as the route does, and
// 404 when the model is not present.
func (s *Server) modelFor(w http.ResponseWriter, tr *track, name string, refuse nameRefusal) *model {
	if !validName(name) {
		e := refuse(name)
		writeError(w, e.status, e.msg)
		return nil
	}
	tr.rec.Model = NormalizeName(name)
	m := s.lookup(name)
	if m == nil {
		tr.rec.Error = fmt.Sprintf("model '%s' not found", name)
		writeError(w, http.StatusNotFound, tr.rec.Error)
	}
	return m
}

// fullName is a model's name as Ollama spells it in capability errors.
func fullName(m *model) string {
	if strings.Contains(m.cfg.Name, "/") {
		return "registry.ollama.ai/" + m.cfg.Name
	}
	return "registry.ollama.ai/library/" + m.cfg.Name
}

// commonInput validates what chat and generate share: reasoning, format
// and options.
func commonInput(m *model, reqModel string, think *api.ThinkValue, format json.RawMessage, options map[string]any) (genInput, *httpError) {
	var in genInput
	var err error
	if in.think, err = thinkLevel(m, reqModel, think); err != nil {
		return in, badRequest("%s", err)
	}
	if in.format, in.schema, err = parseFormat(format); err != nil {
		return in, &httpError{http.StatusInternalServerError, err.Error()}
	}
	in.opts = api.Options{NumPredict: -1}
	if err := in.opts.FromMap(options); err != nil {
		return in, &httpError{http.StatusInternalServerError, err.Error()}
	}
	return in, nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.ChatRequest
	if !decode(w, r, &req) {
		return
	}
	tr.rec.Stream = streaming(req.Stream)
	m := s.modelFor(w, tr, req.Model, refuseAsRequired)
	if m == nil {
		return
	}
	keepAlive := s.keepAlive(req.KeepAlive)
	if len(req.Messages) == 0 && req.KeepAlive != nil && keepAlive == 0 {
		s.unload(m)
		writeJSON(w, http.StatusOK, api.ChatResponse{
			Model: req.Model, CreatedAt: time.Now().UTC(), Message: api.Message{Role: "assistant"},
			Done: true, DoneReason: "unload",
		})
		return
	}
	if s.failFault(w, tr, req.Model) {
		return
	}
	in, herr := chatInput(m, &req)
	if herr != nil {
		tr.rec.Error = herr.msg
		writeError(w, herr.status, herr.msg)
		return
	}
	s.bind(tr, m)
	if len(req.Messages) == 0 {
		if s.preload(r, tr, m, keepAlive) {
			writeJSON(w, http.StatusOK, api.ChatResponse{
				Model: req.Model, CreatedAt: time.Now().UTC(), Message: api.Message{Role: "assistant"},
				Done: true, DoneReason: "load",
			})
		}
		return
	}
	out := newChatSink(w, req.Model, tr.rec.Stream)
	s.serve(w, r, tr, m, keepAlive, buildPlan(m, in), out)
}

func chatInput(m *model, req *api.ChatRequest) (genInput, *httpError) {
	in, herr := commonInput(m, req.Model, req.Think, req.Format, req.Options)
	if herr != nil {
		return in, herr
	}
	if m.cfg.Embedding {
		return in, badRequest("%q does not support chat", req.Model)
	}
	if len(req.Tools) > 0 && m.cfg.NoTools {
		return in, badRequest("%s does not support tools", fullName(m))
	}
	in.segs = chatSegments(req)
	in.seed = textSeed(m.cfg.Name, in.opts.Seed, in.segs)
	in.tools = triggeredTools(req.Tools, req.Messages)
	return in, nil
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.GenerateRequest
	if !decode(w, r, &req) {
		return
	}
	tr.rec.Stream = streaming(req.Stream)
	m := s.modelFor(w, tr, req.Model, refuseAsNotFound)
	if m == nil {
		return
	}
	keepAlive := s.keepAlive(req.KeepAlive)
	if req.Prompt == "" && req.KeepAlive != nil && keepAlive == 0 {
		s.unload(m)
		writeJSON(w, http.StatusOK, api.GenerateResponse{
			Model: req.Model, CreatedAt: time.Now().UTC(), Done: true, DoneReason: "unload",
		})
		return
	}
	if s.failFault(w, tr, req.Model) {
		return
	}
	in, herr := generateInput(m, &req)
	if herr != nil {
		tr.rec.Error = herr.msg
		writeError(w, herr.status, herr.msg)
		return
	}
	s.bind(tr, m)
	if req.Prompt == "" {
		if s.preload(r, tr, m, keepAlive) {
			writeJSON(w, http.StatusOK, api.GenerateResponse{
				Model: req.Model, CreatedAt: time.Now().UTC(), Done: true, DoneReason: "load",
			})
		}
		return
	}
	out := &generateSink{model: req.Model, stream: tr.rec.Stream, seed: in.seed, nd: ndjson{w: w}}
	s.serve(w, r, tr, m, keepAlive, buildPlan(m, in), out)
}

func generateInput(m *model, req *api.GenerateRequest) (genInput, *httpError) {
	in, herr := commonInput(m, req.Model, req.Think, req.Format, req.Options)
	if herr != nil {
		return in, herr
	}
	if m.cfg.Embedding {
		return in, badRequest("%q does not support generate", req.Model)
	}
	in.segs = generateSegments(req)
	in.seed = textSeed(m.cfg.Name, in.opts.Seed, in.segs)
	return in, nil
}

// preload loads a model for a request with nothing to answer, as Ollama
// does for an empty prompt; it reports false if the client gave up.
func (s *Server) preload(r *http.Request, tr *track, m *model, keepAlive time.Duration) bool {
	if _, err := s.ensureLoaded(r.Context(), m, keepAlive); err != nil {
		tr.cancelled = true
		return false
	}
	tr.rec.DoneReason = "load"
	return true
}
