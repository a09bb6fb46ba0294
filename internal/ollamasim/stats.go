package ollamasim

import (
	"context"
	"net/http"
	"time"
)

// Outcome is how a request ended.
type Outcome string

// Request outcomes.
const (
	// OutcomeOK: the full response was sent.
	OutcomeOK Outcome = "ok"
	// OutcomeCancelled: the client's request context ended (it cancelled or
	// disconnected) before the response was complete.
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeBusy: the model's queue was full; the client got 503.
	OutcomeBusy Outcome = "busy"
	// OutcomeError: any other error status (4xx or 5xx, injected or not).
	OutcomeError Outcome = "error"
	// OutcomeDropped: the connection was dropped mid-stream by a fault.
	OutcomeDropped Outcome = "dropped"
	// OutcomeRefused: the connection was reset by the refuse fault.
	OutcomeRefused Outcome = "refused"
)

// Names of injected faults, as they appear in RequestRecord.Fault.
const (
	FaultFail   = "fail"
	FaultDrop   = "drop"
	FaultStall  = "stall"
	FaultGarble = "garble"
	FaultRefuse = "refuse"
)

// RequestRecord is one entry of the request log.
type RequestRecord struct {
	ID       uint64    `json:"id"`
	Server   string    `json:"server,omitempty"`
	Endpoint string    `json:"endpoint"`
	Model    string    `json:"model,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// Status is the HTTP status sent; 0 when nothing was sent.
	Status  int     `json:"status"`
	Outcome Outcome `json:"outcome"`
	// Fault names the injected fault that hit the request, if any.
	Fault  string `json:"fault,omitempty"`
	Error  string `json:"error,omitempty"`
	Stream bool   `json:"stream"`
	// Chunks is the number of response messages produced (streamed or not).
	Chunks       int    `json:"chunks"`
	PromptTokens int    `json:"prompt_tokens,omitempty"`
	CachedTokens int    `json:"cached_tokens,omitempty"`
	EvalTokens   int    `json:"eval_tokens,omitempty"`
	DoneReason   string `json:"done_reason,omitempty"`
	// FirstChunk is the time from the request's start to its first chunk.
	FirstChunk time.Duration `json:"first_chunk,omitempty"`
}

// Duration is the request's wall time.
func (r RequestRecord) Duration() time.Duration { return r.End.Sub(r.Start) }

// Stats is a snapshot of the server's counters.
type Stats struct {
	Name string `json:"name,omitempty"`
	// Requests counts API requests received (control endpoints excluded).
	Requests int64 `json:"requests"`
	// InFlight is the number of API requests being served.
	InFlight  int   `json:"in_flight"`
	Completed int64 `json:"completed"`
	Cancelled int64 `json:"cancelled"`
	Rejected  int64 `json:"rejected"`
	Errors    int64 `json:"errors"`
	Dropped   int64 `json:"dropped"`
	// Stalled counts requests that hit the stall fault.
	Stalled int64 `json:"stalled"`
	// Refused counts connections reset by the refuse fault.
	Refused int64 `json:"refused"`
	// Models is keyed by the canonical model name.
	Models map[string]ModelStats `json:"models"`
}

// ModelStats are one model's counters.
type ModelStats struct {
	Present bool `json:"present"`
	Loaded  bool `json:"loaded"`
	// InFlight counts inference requests for the model being served:
	// queued, loading or generating.
	InFlight int `json:"in_flight"`
	// Running counts requests holding one of the model's parallel slots.
	Running int `json:"running"`
	// PeakRunning is the most requests that ever held slots at once.
	PeakRunning int `json:"peak_running"`
	// Queued counts requests waiting for a slot.
	Queued    int   `json:"queued"`
	Requests  int64 `json:"requests"`
	Cancelled int64 `json:"cancelled"`
	// Loads counts loads, a model loaded at start included.
	Loads int64 `json:"loads"`
}

// Model returns the stats of a model by any spelling of its name.
func (s Stats) Model(name string) ModelStats { return s.Models[NormalizeName(name)] }

type counters struct {
	requests, completed, cancelled, rejected int64
	errors, dropped, stalled, refused        int64
	inFlight                                 int
}

// track follows one API request from start to finish.
type track struct {
	rec       RequestRecord
	m         *model
	cancelled bool
	dropped   bool
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// handler is an API endpoint with its request tracker.
type handler func(w http.ResponseWriter, r *http.Request, tr *track)

// tracked wraps an API endpoint with request accounting.
func (s *Server) tracked(endpoint string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tr := s.begin(endpoint)
		sw := &statusWriter{ResponseWriter: w}
		defer s.finish(tr, sw, r)
		h(sw, r, tr)
	}
}

func (s *Server) begin(endpoint string) *track {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.cnt.requests++
	s.cnt.inFlight++
	s.notifyLocked()
	return &track{rec: RequestRecord{ID: s.nextID, Server: s.cfg.Name, Endpoint: endpoint, Start: time.Now()}}
}

// bind attributes the request to a model for per-model accounting.
func (s *Server) bind(tr *track, m *model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tr.m = m
	tr.rec.Model = m.cfg.Name
	m.inFlight++
	m.requests++
	s.notifyLocked()
}

func (s *Server) finish(tr *track, sw *statusWriter, r *http.Request) {
	rec := &tr.rec
	rec.End = time.Now()
	rec.Status = sw.status
	rec.Outcome = outcomeOf(tr, sw.status, r.Context().Err() != nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cnt.inFlight--
	s.countLocked(rec)
	if tr.m != nil {
		tr.m.inFlight--
		if rec.Outcome == OutcomeCancelled {
			tr.m.cancelled++
		}
	}
	s.records = append(s.records, *rec)
	// Trim in batches so that a full log costs O(1) per request.
	if len(s.records) > s.maxRecords+s.maxRecords/4 {
		s.records = append(s.records[:0:0], s.records[len(s.records)-s.maxRecords:]...)
	}
	s.notifyLocked()
}

func outcomeOf(tr *track, status int, ctxDone bool) Outcome {
	switch {
	case tr.rec.Fault == FaultRefuse:
		return OutcomeRefused
	case tr.dropped:
		return OutcomeDropped
	case tr.cancelled, ctxDone && status == 0:
		return OutcomeCancelled
	case status == http.StatusServiceUnavailable:
		return OutcomeBusy
	case status >= 400:
		return OutcomeError
	default:
		return OutcomeOK
	}
}

func (s *Server) countLocked(rec *RequestRecord) {
	switch rec.Outcome {
	case OutcomeOK:
		s.cnt.completed++
	case OutcomeCancelled:
		s.cnt.cancelled++
	case OutcomeBusy:
		s.cnt.rejected++
	case OutcomeError:
		s.cnt.errors++
	case OutcomeDropped:
		s.cnt.dropped++
	case OutcomeRefused:
		s.cnt.refused++
	}
	if rec.Fault == FaultStall {
		s.cnt.stalled++
	}
}

// notifyLocked wakes every WaitFor; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Server) statsLocked() Stats {
	now := time.Now()
	st := Stats{
		Name: s.cfg.Name, Requests: s.cnt.requests, InFlight: s.cnt.inFlight,
		Completed: s.cnt.completed, Cancelled: s.cnt.cancelled, Rejected: s.cnt.rejected,
		Errors: s.cnt.errors, Dropped: s.cnt.dropped, Stalled: s.cnt.stalled, Refused: s.cnt.refused,
		Models: make(map[string]ModelStats, len(s.models)),
	}
	for _, m := range s.models {
		st.Models[m.cfg.Name] = ModelStats{
			Present: m.present, Loaded: m.loadedAt(now),
			InFlight: m.inFlight, Running: m.running, PeakRunning: m.peakRunning, Queued: m.queued,
			Requests: m.requests, Cancelled: m.cancelled, Loads: m.loads,
		}
	}
	return st
}

// WaitFor blocks until cond holds for the current Stats or ctx ends. It
// re-checks cond after every change of the counters, so tests can await a
// state (e.g. "two requests running, three queued") without sleeping.
func (s *Server) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		st := s.statsLocked()
		ch := s.changed
		s.mu.Unlock()
		if cond(st) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.records
	if len(recs) > s.maxRecords {
		recs = recs[len(recs)-s.maxRecords:]
	}
	return append([]RequestRecord(nil), recs...)
}

// Cancellations returns the logged requests that the client cancelled.
func (s *Server) Cancellations() []RequestRecord {
	var out []RequestRecord
	for _, r := range s.Requests() {
		if r.Outcome == OutcomeCancelled {
			out = append(out, r)
		}
	}
	return out
}

// ResetStats zeroes the counters (except requests in flight) and empties
// the request log.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cnt = counters{inFlight: s.cnt.inFlight}
	s.records = nil
	for _, m := range s.models {
		m.requests, m.cancelled, m.loads, m.peakRunning = 0, 0, 0, m.running
	}
	s.notifyLocked()
}
