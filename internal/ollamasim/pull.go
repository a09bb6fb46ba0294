package ollamasim

import (
	"cmp"
	"net/http"
	"time"

	"github.com/ollama/ollama/api"
)

// pullSteps is the number of download progress updates of a pull.
const pullSteps = 10

// progressSink sends pull progress, streamed or as the final status only.
type progressSink struct {
	stream bool
	nd     ndjson
	last   api.ProgressResponse
}

func (p *progressSink) send(pr api.ProgressResponse) error {
	p.last = pr
	if !p.stream {
		return nil
	}
	return p.nd.write(pr)
}

// fail reports an error the way Ollama does: inside the stream once it has
// started, as a 500 otherwise.
func (p *progressSink) fail(msg string) {
	if p.stream && p.nd.started {
		_ = p.nd.write(map[string]string{"error": msg})
		return
	}
	writeError(p.nd.w, http.StatusInternalServerError, msg)
}

// handlePull "downloads" a model of the registry: "pulling manifest", then
// progress for its blob over Config.PullDuration, "verifying sha256
// digest", "writing manifest" and "success". The model is then present.
func (s *Server) handlePull(w http.ResponseWriter, r *http.Request, tr *track) {
	var req api.PullRequest
	if !decode(w, r, &req) {
		return
	}
	name := cmp.Or(req.Model, req.Name)
	if !validName(name) {
		writeError(w, http.StatusBadRequest, "invalid model name")
		return
	}
	tr.rec.Model, tr.rec.Stream = NormalizeName(name), streaming(req.Stream)
	s.mu.Lock()
	m := s.models[nameKey(name)]
	s.mu.Unlock()
	out := &progressSink{stream: tr.rec.Stream, nd: ndjson{w: w}}
	if out.send(api.ProgressResponse{Status: "pulling manifest"}) != nil {
		tr.cancelled = true
		return
	}
	if m == nil {
		tr.rec.Error = "pull model manifest: file does not exist"
		out.fail(tr.rec.Error)
		return
	}
	if !s.download(r, tr, m, out) {
		tr.cancelled = true
		return
	}
	s.mu.Lock()
	m.present, m.modifiedAt = true, time.Now()
	s.notifyLocked()
	s.mu.Unlock()
	if out.send(api.ProgressResponse{Status: "success"}) != nil {
		tr.cancelled = true
		return
	}
	if !out.stream {
		writeJSON(w, http.StatusOK, out.last)
	}
}

// download sends the blob's progress and the verification steps; it
// reports false if the client went away.
func (s *Server) download(r *http.Request, tr *track, m *model, out *progressSink) bool {
	ctx := r.Context()
	digest := "sha256:" + digestOf("blob", m.cfg.Name)
	step := s.cfg.PullDuration / pullSteps
	for i := range pullSteps + 1 {
		if i > 0 && sleep(ctx, step) != nil {
			return false
		}
		err := out.send(api.ProgressResponse{
			Status: "pulling " + digest[7:19], Digest: digest,
			Total: m.cfg.Size, Completed: m.cfg.Size * int64(i) / pullSteps,
		})
		if err != nil {
			return false
		}
		tr.rec.Chunks++
	}
	for _, st := range []string{"verifying sha256 digest", "writing manifest"} {
		if out.send(api.ProgressResponse{Status: st}) != nil || ctx.Err() != nil {
			return false
		}
	}
	return true
}
