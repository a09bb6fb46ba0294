package ollamasim

import (
	"cmp"
	"context"
	"io"
	"net"
	"net/http"
)

// DefaultFailMessage is the error of the fail fault: what Ollama answers
// when its runner has crashed.
const DefaultFailMessage = "llama runner process has terminated: exit status 2"

// Faults are injected failures. The zero value injects none. They can be
// changed at any time with SetFaults (or POST /_sim/faults) and apply to
// requests, and to chunks of responses already streaming, from then on.
type Faults struct {
	// Refuse closes the listener, so new connections are refused, and
	// resets the open ones (requests in flight on them end cancelled).
	// Clearing it listens again on the same address. Without a listener
	// (the Server used as a plain http.Handler) every request's connection
	// is reset instead.
	Refuse bool `json:"refuse,omitempty"`
	// Fail answers inference calls (chat, generate, embed, embeddings) with
	// FailStatus (500 when zero) and FailMessage (DefaultFailMessage when
	// empty).
	Fail        bool   `json:"fail,omitempty"`
	FailStatus  int    `json:"fail_status,omitempty"`
	FailMessage string `json:"fail_message,omitempty"`
	// Drop closes the connection (a TCP reset) after DropAfter response
	// chunks, without the final "done" message. A non-streamed answer is
	// one chunk produced per token, so it gets no response at all.
	Drop      bool `json:"drop,omitempty"`
	DropAfter int  `json:"drop_after,omitempty"`
	// Stall stops sending after StallAfter chunks and holds the request
	// until the client cancels it (or the server closes).
	Stall      bool `json:"stall,omitempty"`
	StallAfter int  `json:"stall_after,omitempty"`
	// Garble writes a line that is not JSON after GarbleAfter response
	// chunks, then ends the response as if it were whole.
	Garble      bool `json:"garble,omitempty"`
	GarbleAfter int  `json:"garble_after,omitempty"`
	// BadMeta answers /api/ps, /api/tags and /api/show 200 with a body
	// that is not JSON.
	BadMeta bool `json:"bad_meta,omitempty"`
	// Model, when set, limits Fail, Drop, Stall and Garble to that model.
	Model string `json:"model,omitempty"`
}

// Faults returns the active faults.
func (s *Server) Faults() Faults {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.faults
}

// SetFaults replaces the active faults. It fails only when clearing Refuse
// cannot listen on the server's address again.
func (s *Server) SetFaults(f Faults) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.fmu.Lock()
	was := s.faults.Refuse
	s.faults = f
	s.fmu.Unlock()
	switch {
	case f.Refuse && !was:
		s.stopAcceptingLocked()
	case !f.Refuse && was:
		return s.resumeAcceptingLocked()
	}
	return nil
}

func (s *Server) updateFaults(fn func(*Faults)) error {
	f := s.Faults()
	fn(&f)
	return s.SetFaults(f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() error { return s.SetFaults(Faults{}) }

// SetRefuse switches the refuse-connections fault.
func (s *Server) SetRefuse(on bool) error {
	return s.updateFaults(func(f *Faults) { f.Refuse = on })
}

// SetFail switches the fail fault (500 on inference calls).
func (s *Server) SetFail(on bool) {
	_ = s.updateFaults(func(f *Faults) { f.Fail = on })
}

// SetDropAfter drops connections after n chunks; a negative n disables it.
func (s *Server) SetDropAfter(n int) {
	_ = s.updateFaults(func(f *Faults) { f.Drop, f.DropAfter = n >= 0, max(n, 0) })
}

// SetGarbleAfter writes a line that is not JSON after n chunks and ends
// the response; a negative n disables it.
func (s *Server) SetGarbleAfter(n int) {
	_ = s.updateFaults(func(f *Faults) { f.Garble, f.GarbleAfter = n >= 0, max(n, 0) })
}

// SetBadMeta makes /api/ps, /api/tags and /api/show answer garbage.
func (s *Server) SetBadMeta(on bool) {
	_ = s.updateFaults(func(f *Faults) { f.BadMeta = on })
}

// SetStallAfter stalls responses after n chunks; a negative n disables it.
func (s *Server) SetStallAfter(n int) {
	_ = s.updateFaults(func(f *Faults) { f.Stall, f.StallAfter = n >= 0, max(n, 0) })
}

// faultsFor returns the faults that apply to a request for a model.
func (s *Server) faultsFor(name string) Faults {
	f := s.Faults()
	if f.Model != "" && nameKey(f.Model) != nameKey(name) {
		return Faults{Refuse: f.Refuse}
	}
	return f
}

// failFault answers an inference call with the fail fault's error.
func (s *Server) failFault(w http.ResponseWriter, tr *track, model string) bool {
	f := s.faultsFor(model)
	if !f.Fail {
		return false
	}
	tr.rec.Fault = FaultFail
	tr.rec.Error = cmp.Or(f.FailMessage, DefaultFailMessage)
	writeError(w, cmp.Or(f.FailStatus, http.StatusInternalServerError), tr.rec.Error)
	return true
}

// chunkFault applies the drop and stall faults before chunk i. A fault
// switched on mid-stream past its chunk count hits at the next chunk. It
// reports whether the response must end.
func (s *Server) chunkFault(ctx context.Context, w http.ResponseWriter, tr *track, m *model, i int) bool {
	f := s.faultsFor(m.cfg.Name)
	switch {
	case f.Drop && i >= f.DropAfter:
		tr.rec.Fault, tr.dropped = FaultDrop, true
		resetConn(w)
		return true
	case f.Garble && i >= f.GarbleAfter:
		tr.rec.Fault = FaultGarble
		_, _ = io.WriteString(w, "{\"model\":\"garbled\",\"message\":{\"content\":\n")
		http.NewResponseController(w).Flush()
		return true
	case f.Stall && i >= f.StallAfter:
		tr.rec.Fault = FaultStall
		s.mu.Lock()
		s.cnt.stalled++
		s.notifyLocked()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-s.closing:
		}
		tr.cancelled = true
		return true
	}
	return false
}

// resetConn resets the request's connection; what was already flushed has
// reached the client, nothing else will. Where the connection cannot be
// taken over (HTTP/2, recorders) it aborts the handler, which net/http
// turns into a broken response.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	reset(conn)
}

// reset closes a connection with a TCP RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// refuseRequest resets the connection of a request that arrived while
// Refuse is on (possible only without a listener, or in a race with it).
func (s *Server) refuseRequest(w http.ResponseWriter) {
	s.mu.Lock()
	s.cnt.refused++
	s.notifyLocked()
	s.mu.Unlock()
	resetConn(w)
}

// stopAcceptingLocked closes the listener and resets every open
// connection; s.lmu must be held.
func (s *Server) stopAcceptingLocked() {
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	n := len(s.conns)
	for c := range s.conns {
		reset(c)
		delete(s.conns, c)
	}
	s.mu.Lock()
	s.cnt.refused += int64(n)
	s.notifyLocked()
	s.mu.Unlock()
}

// resumeAcceptingLocked listens again on the address the server had;
// s.lmu must be held.
func (s *Server) resumeAcceptingLocked() error {
	if s.hs == nil || s.ln != nil || s.isClosed() {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.ln = ln
	go s.serveOn(ln)
	return nil
}

// connState tracks open connections so that Refuse can reset them.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	switch st {
	case http.StateNew:
		if s.Faults().Refuse {
			reset(c)
			return
		}
		s.conns[c] = struct{}{}
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
	}
}
