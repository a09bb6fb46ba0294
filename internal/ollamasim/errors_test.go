package ollamasim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sovra/sovra/internal/ollamasim"
)

func TestErrors(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantError                string // exact error message; "" checks only the code
	}{
		{"chat unknown model", "POST", "/api/chat", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, "model 'nope' not found"},
		{"chat missing model", "POST", "/api/chat", `{"messages":[]}`, 400, "model is required"},
		{"chat bad json", "POST", "/api/chat", `{"model":`, 400, ""},
		{"chat empty body", "POST", "/api/chat", ``, 400, "missing request body"},
		{"chat embedding model", "POST", "/api/chat", `{"model":"nomic-embed-text","messages":[{"role":"user","content":"x"}]}`, 400, `"nomic-embed-text" does not support chat`},
		{"chat bad think", "POST", "/api/chat", `{"model":"deepseek-r1:1.5b","think":"extreme"}`, 400, ""},
		{"chat bad option", "POST", "/api/chat", `{"model":"llama3.2:1b","messages":[{"role":"user","content":"x"}],"options":{"num_predict":"many"}}`, 500, `option "num_predict" must be of type integer`},
		{"generate unknown model", "POST", "/api/generate", `{"model":"nope:7b","prompt":"x"}`, 404, "model 'nope:7b' not found"},
		{"generate missing model", "POST", "/api/generate", `{"prompt":"x"}`, 404, "model '' not found"},
		{"generate embedding model", "POST", "/api/generate", `{"model":"nomic-embed-text","prompt":"x"}`, 400, `"nomic-embed-text" does not support generate`},
		{"generate think on plain model", "POST", "/api/generate", `{"model":"llama3.2:1b","prompt":"x","think":true}`, 400, `"llama3.2:1b" does not support thinking`},
		{"show unknown", "POST", "/api/show", `{"model":"nope"}`, 404, "model 'nope' not found"},
		{"show missing", "POST", "/api/show", `{}`, 400, "model is required"},
		{"embed missing", "POST", "/api/embed", `{"input":"x"}`, 500, "unqualified name: registry.ollama.ai/library/!MISSING!:latest"},
		{"pull missing", "POST", "/api/pull", `{}`, 400, "invalid model name"},
		// Names Ollama's parser refuses, answered as Ollama v0.17.4 does.
		{"chat path as name", "POST", "/api/chat", `{"model":"../../etc/passwd","messages":[{"role":"user","content":"x"}]}`, 400, "model is required"},
		{"generate path as name", "POST", "/api/generate", `{"model":"../../etc/passwd","prompt":"x"}`, 404, "model '../../etc/passwd' not found"},
		{"show path as name", "POST", "/api/show", `{"model":"../../etc/passwd"}`, 500, "unqualified name: ../../etc/passwd:latest"},
		{"show space in name", "POST", "/api/show", `{"model":"a b"}`, 500, "unqualified name: registry.ollama.ai/library/a b:latest"},
		{"embed path as name", "POST", "/api/embed", `{"model":"../../etc/passwd","input":"x"}`, 500, "unqualified name: ../../etc/passwd:latest"},
		{"embeddings path as name", "POST", "/api/embeddings", `{"model":"../../etc/passwd","prompt":"x"}`, 400, "model is required"},
		{"delete path as name", "DELETE", "/api/delete", `{"model":"../../etc/passwd"}`, 400, `name "../../etc/passwd" is invalid`},
		{"pull path as name", "POST", "/api/pull", `{"model":"../../etc/passwd"}`, 400, "invalid model name"},
		{"wrong method", "GET", "/api/chat", ``, 405, ""},
		{"unknown path", "GET", "/api/nothing", ``, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, ct, body := rawDo(t, s, tc.method, tc.path, tc.body)
			if code != tc.wantCode {
				t.Fatalf("status %d (%s), want %d", code, body, tc.wantCode)
			}
			if tc.wantError == "" {
				return
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("body %q (%s) is not an error document", body, ct)
			}
			if e.Error != tc.wantError {
				t.Errorf("error %q, want %q", e.Error, tc.wantError)
			}
		})
	}
	if got := s.Stats().Errors; got != int64(len(tests)-2) {
		t.Errorf("%d errors counted, want %d (405 and 404 are not API requests)", got, len(tests)-2)
	}
}

func TestRequestLog(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{Name: "node-a"})
	rawPost(t, s, "/api/chat", `{"model":"llama3.2:1b","messages":[{"role":"user","content":"hello there"}]}`)
	rec := lastRecord(t, s, "/api/chat")
	if rec.Server != "node-a" || rec.Model != "llama3.2:1b" || rec.Outcome != ollamasim.OutcomeOK ||
		rec.Status != http.StatusOK || !rec.Stream || rec.PromptTokens == 0 || rec.EvalTokens == 0 ||
		rec.DoneReason != "stop" || rec.End.Before(rec.Start) || rec.Chunks != rec.EvalTokens+1 {
		t.Errorf("record %+v, want a complete streamed chat on node-a", rec)
	}
	code, _, body := rawDo(t, s, http.MethodGet, "/_sim/requests", "")
	var recs []ollamasim.RequestRecord
	if err := json.Unmarshal([]byte(body), &recs); err != nil || code != 200 || len(recs) != 1 || recs[0].ID != rec.ID {
		t.Fatalf("/_sim/requests = %d %s, want the one record", code, body)
	}
	s.ResetStats()
	if st := s.Stats(); st.Requests != 0 || len(s.Requests()) != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func TestRequestLogBound(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{MaxRecords: 4})
	for range 11 {
		rawDo(t, s, http.MethodGet, "/api/version", "")
	}
	lastRecord(t, s, "/api/version")
	recs := s.Requests()
	if len(recs) != 4 || recs[0].ID != 8 || recs[3].ID != 11 {
		t.Fatalf("kept %d records %+v, want the last four (ids 8 to 11)", len(recs), recs)
	}
	if st := s.Stats(); st.Requests != 11 || st.Completed != 11 {
		t.Errorf("stats %+v, want all 11 counted", st)
	}
}
