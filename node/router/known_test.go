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
	if r.Known("llama3.2:1b") || local.calls != calls {
		t.Fatalf("the list was asked again at once after a failure (calls %d, then %d)", calls, local.calls)
	}
	r.localList.at = time.Now().Add(-localModelsTTL - time.Millisecond) // the retry is due
	if !r.Known("llama3.2:1b") || local.calls != calls+1 {
		t.Fatalf("after the retry delay the list was not asked again at the next miss (calls %d, then %d)", calls, local.calls)
	}
}

// blockingList is a local Ollama whose List waits to be released.
type blockingList struct {
	backend.Backend
	started, release chan struct{}
}

func (b *blockingList) List(context.Context) (*api.ListResponse, error) {
	b.started <- struct{}{}
	<-b.release
	return &api.ListResponse{Models: []api.ListModelResponse{{Name: "qwen3:0.6b", Model: "qwen3:0.6b"}}}, nil
}

// TestLocalModelsMissWaitsForARefreshUnderWay: a request that misses
// while another is refreshing the list reads the fresh list rather than
// refusing the model.
func TestLocalModelsMissWaitsForARefreshUnderWay(t *testing.T) {
	local := &blockingList{started: make(chan struct{}), release: make(chan struct{})}
	r := New("a", local, nil, nil).WithConfig(Config{ServeUndeployed: true})
	first := make(chan bool, 1)
	go func() { first <- r.Known("qwen3:0.6b") }()
	<-local.started // the first request is refreshing
	second := make(chan bool, 1)
	go func() { second <- r.Known("qwen3:0.6b") }()
	// The second must wait for the refresh: an answer before it ends can
	// only be the old, empty list's. (The window bounds how long the test
	// looks for such an early answer, not a wait for a condition.)
	select {
	case known := <-second:
		t.Fatalf("a request answered %v during a refresh instead of waiting for it", known)
	case <-time.After(200 * time.Millisecond):
	}
	close(local.release)
	if !<-first || !<-second {
		t.Fatal("a request that missed during a refresh refused a model the fresh list holds")
	}
}
