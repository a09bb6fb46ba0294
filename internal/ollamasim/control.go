package ollamasim

import (
	"net/http"
)

// controlRoutes registers the /_sim/ endpoints:
//
//	GET    /_sim/stats     Stats as JSON
//	GET    /_sim/requests  the request log (RequestRecord list)
//	POST   /_sim/reset     ResetStats
//	GET    /_sim/faults    the active Faults
//	POST   /_sim/faults    replace the Faults (also PUT); the body is Faults
//	DELETE /_sim/faults    clear every fault
//	POST   /_sim/models    add a present model; the body is a ModelConfig
func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /_sim/requests", func(w http.ResponseWriter, _ *http.Request) {
		recs := s.Requests()
		if recs == nil {
			recs = []RequestRecord{}
		}
		writeJSON(w, http.StatusOK, recs)
	})
	mux.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /_sim/faults", s.handleSetFaults)
	mux.HandleFunc("PUT /_sim/faults", s.handleSetFaults)
	mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ClearFaults(); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /_sim/models", func(w http.ResponseWriter, r *http.Request) {
		var mc ModelConfig
		if !decode(w, r, &mc) {
			return
		}
		if NormalizeName(mc.Name) == "" {
			writeError(w, http.StatusBadRequest, "model is required")
			return
		}
		s.AddModel(mc)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if !decode(w, r, &f) {
		return
	}
	if err := s.SetFaults(f); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}
