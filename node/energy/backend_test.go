package energy

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

// streamer is a backend whose Chat and Generate stream three chunks, the
// last one final with 42 output tokens, or stop early when cut is set.
type streamer struct {
	backend.Backend
	cut bool
}

func (s streamer) Chat(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
	for i := range 3 {
		r := api.ChatResponse{Done: i == 2}
		if r.Done {
			r.EvalCount = 42
		}
		if s.cut && r.Done {
			return backend.ErrTruncated
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s streamer) Generate(_ context.Context, _ *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	return s.Chat(context.Background(), nil, func(r api.ChatResponse) error {
		return fn(api.GenerateResponse{Done: r.Done, Metrics: r.Metrics})
	})
}

func TestCountingCountsFinishedGenerations(t *testing.T) {
	type call struct {
		model string
		n     int64
	}
	stop := errors.New("client went away")
	tests := []struct {
		name  string
		cut   bool
		fnErr error // returned by the caller's fn on the final chunk
		want  []call
	}{
		{name: "finished", want: []call{{"m:7b", 42}, {"g:1b", 42}}},
		{name: "the caller stops at the final chunk", fnErr: stop, want: []call{{"m:7b", 42}, {"g:1b", 42}}},
		{name: "cut before the final chunk", cut: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []call
			be := Counting(streamer{cut: tc.cut}, func(model string, n int64) { got = append(got, call{model, n}) })
			chunks := 0
			_ = be.Chat(context.Background(), &api.ChatRequest{Model: "m:7b"}, func(r api.ChatResponse) error {
				chunks++
				if r.Done {
					return tc.fnErr
				}
				return nil
			})
			_ = be.Generate(context.Background(), &api.GenerateRequest{Model: "g:1b"}, func(r api.GenerateResponse) error {
				if r.Done {
					return tc.fnErr
				}
				return nil
			})
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("counted %v, want %v", got, tc.want)
			}
			if wantChunks := map[bool]int{false: 3, true: 2}[tc.cut]; chunks != wantChunks {
				t.Fatalf("%d chunks reached the caller, want %d", chunks, wantChunks)
			}
		})
	}
}
