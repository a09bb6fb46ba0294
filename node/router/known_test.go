package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

// flakyList is a local Ollama whose model list can be changed or made to
// fail.
type flakyList struct {
	backend.Backend
	models []string
	err    error
	calls  int
}

func (f *flakyList) List(context.Context) (*api.ListResponse, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	l := &api.ListResponse{}
	for _, m := range f.models {
		l.Models = append(l.Models, api.ListModelResponse{Name: m, Model: m})
	}
	return l, nil
}

// TestLocalModelsSurviveAFailedRefresh: a refresh that fails (a slow
// Ollama on a busy host) keeps what the last answer said, and the list is
// asked again at the next miss rather than trusted empty for
// localModelsTTL.
func TestLocalModelsSurviveAFailedRefresh(t *testing.T) {
	local := &flakyList{models: []string{"qwen3:0.6b"}}
	r := New("a", local, nil, nil).WithConfig(Config{ServeUndeployed: true})
	if !r.Known("qwen3:0.6b") {
		t.Fatal("a model of the local Ollama is not known")
	}
	r.localList.at = time.Now().Add(-2 * localModelsTTL)
	local.err = errors.New("timeout")
	if r.Known("llama3.2:1b") {
		t.Fatal("a model no list held is known")
	}
	if !r.Known("qwen3:0.6b") {
		t.Fatal("a failed refresh hid a model the last list held")
	}
	calls := local.calls
	local.err = nil
	local.models = []string{"qwen3:0.6b", "llama3.2:1b"}
	if !r.Known("llama3.2:1b") || local.calls != calls+1 {
		t.Fatalf("after the failure the list was not asked again at the next miss (calls %d, then %d)", calls, local.calls)
	}
}
