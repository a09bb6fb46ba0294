package ollamasim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// writeJSON answers with one JSON document.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with Ollama's error document {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decode reads a JSON request body into v, answering 400 as Ollama does
// when the body is missing or malformed.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	err := json.NewDecoder(r.Body).Decode(v)
	switch {
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "missing request body")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleepUntil waits until the deadline or until ctx ends.
func sleepUntil(ctx context.Context, deadline time.Time) error {
	return sleep(ctx, time.Until(deadline))
}

// streaming reports whether a request's stream flag asks for NDJSON; like
// Ollama, an absent flag means true.
func streaming(flag *bool) bool { return flag == nil || *flag }
