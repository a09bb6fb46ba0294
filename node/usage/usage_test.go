package usage

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

// fakeState applies commands to a state, failing the first fails of them
// after applying them (a write whose answer was lost).
type fakeState struct {
	s     *state.State
	index uint64
	fails int
}

func (f *fakeState) apply(_ context.Context, cmd state.Command) (state.Outcome, error) {
	e, err := state.Encode(cmd)
	if err != nil {
		return state.Outcome{}, err
	}
	f.index++
	out := f.s.Apply(f.index, e)
	if f.fails > 0 {
		f.fails--
		return state.Outcome{}, errors.New("answer lost")
	}
	return out, out.Err()
}

func TestFlushRetriesTheSameBatch(t *testing.T) {
	tests := []struct {
		name  string
		fails int
	}{
		{"written at once", 0},
		{"answer lost twice", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeState{s: state.New(), fails: tc.fails}
			r := New("n1", nil)
			now := time.Unix(1_700_000_000, 0)
			for i := range 5 {
				r.Add(Event{Time: now, Key: "k", Model: "m", Node: "n2", PromptTokens: 10, Completion: int64(i)})
			}
			for f.fails > 0 {
				if err := r.Flush(context.Background(), f.apply); err == nil {
					t.Fatal("no error")
				}
				r.Add(Event{Time: now, Key: "k", Model: "m", Node: "n2", PromptTokens: 1})
			}
			for range 2 { // the retried batch, then what came meanwhile
				if err := r.Flush(context.Background(), f.apply); err != nil {
					t.Fatal(err)
				}
			}
			var p, c, n int64
			for _, b := range f.s.Usage {
				p, c, n = p+b.PromptTokens, c+b.CompletionTokens, n+b.Requests
			}
			wantP, wantN := int64(50+tc.fails), int64(5+tc.fails)
			if p != wantP || c != 10 || n != wantN {
				t.Fatalf("prompt %d completion %d requests %d, want %d 10 %d", p, c, n, wantP, wantN)
			}
		})
	}
}
