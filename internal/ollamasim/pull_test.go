package ollamasim_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

func listed(t *testing.T, c *api.Client, name string) bool {
	t.Helper()
	list, err := c.List(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(list.Models, func(m api.ListModelResponse) bool { return m.Name == name })
}

func TestPull(t *testing.T) {
	tests := []struct {
		name        string
		model       string
		stream      *bool
		wantErr     string
		wantListed  string
		wantUpdates bool
	}{
		{name: "streamed from registry", model: "qwen3:0.6b", wantListed: "qwen3:0.6b", wantUpdates: true},
		{name: "single from registry", model: "llama3.1:8b", stream: boolPtr(false), wantListed: "llama3.1:8b"},
		{name: "tag implied", model: "all-minilm", wantListed: "all-minilm:latest", wantUpdates: true},
		{name: "already present", model: chatModel, wantListed: chatModel, wantUpdates: true},
		{name: "unknown streamed", model: "nope:7b", wantErr: "pull model manifest: file does not exist"},
		{name: "unknown single", model: "nope:7b", stream: boolPtr(false), wantErr: "pull model manifest: file does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ollamasim.StartTest(t, ollamasim.Config{PullDuration: 20 * time.Millisecond})
			c := s.Client()
			var updates []api.ProgressResponse
			start := time.Now()
			err := c.Pull(testCtx(t), &api.PullRequest{Model: tc.model, Stream: tc.stream}, func(p api.ProgressResponse) error {
				updates = append(updates, p)
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(errorText(err), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < 20*time.Millisecond {
				t.Errorf("pull took %v, want at least the pull duration", d)
			}
			if !listed(t, c, tc.wantListed) {
				t.Errorf("%s not listed after pull", tc.wantListed)
			}
			if tc.wantUpdates {
				checkProgress(t, updates)
			} else if len(updates) != 1 || updates[0].Status != "success" {
				t.Errorf("single answer %+v, want one success", updates)
			}
		})
	}
}

func checkProgress(t *testing.T, updates []api.ProgressResponse) {
	t.Helper()
	var statuses []string
	var last int64 = -1
	for _, u := range updates {
		if strings.HasPrefix(u.Status, "pulling ") && u.Status != "pulling manifest" {
			if u.Digest == "" || u.Total <= 0 || u.Completed < last || u.Completed > u.Total {
				t.Fatalf("bad progress %+v after %d", u, last)
			}
			if last < 0 && u.Status != "pulling "+u.Digest[7:19] {
				t.Errorf("status %q, want the short digest", u.Status)
			}
			last = u.Completed
			if len(statuses) > 0 && statuses[len(statuses)-1] == "pulling" {
				continue
			}
			statuses = append(statuses, "pulling")
			continue
		}
		statuses = append(statuses, u.Status)
	}
	want := []string{"pulling manifest", "pulling", "verifying sha256 digest", "writing manifest", "success"}
	if !slices.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	if final := updates[len(updates)-4]; final.Completed != final.Total {
		t.Errorf("last progress %+v, want completed == total", final)
	}
}

func TestPullCancelled(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{PullDuration: time.Hour})
	c := s.Client()
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		done <- c.Pull(ctx, &api.PullRequest{Model: "qwen3:0.6b"}, func(api.ProgressResponse) error { return nil })
	}()
	waitFor(t, s, "pull in flight", func(st ollamasim.Stats) bool { return st.InFlight == 1 })
	cancel()
	<-done
	waitFor(t, s, "pull cancelled", func(st ollamasim.Stats) bool { return st.Cancelled == 1 })
	if listed(t, c, "qwen3:0.6b") {
		t.Error("cancelled pull left the model listed")
	}
	if rec := lastRecord(t, s, "/api/pull"); rec.Outcome != ollamasim.OutcomeCancelled || rec.Model != "qwen3:0.6b" {
		t.Errorf("record %+v, want a cancelled pull of qwen3:0.6b", rec)
	}
}
