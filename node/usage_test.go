package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// TestUsageMatchesTheBackends sends chats with a key through every node,
// and checks that the usage the cluster recorded is the tokens the
// simulated Ollamas reported in the answers.
func TestUsageMatchesTheBackends(t *testing.T) {
	c := keyTestCluster(t)
	entry := c.url(c.ids[0])
	k := newKey(t, entry, `{"name":"metered"}`)
	waitKeyEverywhere(t, c, k.Secret, http.StatusOK)

	var prompt, completion, requests int64
	for _, id := range c.ids {
		for range 4 {
			code, _, body := withKey(t, "POST", c.url(id)+"/v1/chat/completions", chatBody("chat"), k.Secret, nil)
			var r struct {
				Usage struct {
					PromptTokens     int64 `json:"prompt_tokens"`
					CompletionTokens int64 `json:"completion_tokens"`
				} `json:"usage"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &r) != nil {
				t.Fatalf("%s: %d %s", id, code, body)
			}
			prompt, completion, requests = prompt+r.Usage.PromptTokens, completion+r.Usage.CompletionTokens, requests+1
		}
	}
	if prompt == 0 || completion == 0 {
		t.Fatal("the simulators reported no tokens")
	}
	for _, id := range c.ids {
		if err := c.nodes[id].FlushUsage(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var got usageAnswer
	if code := admin(t, "GET", entry+"/admin/v1/usage?group_by=key", "", &got); code != http.StatusOK {
		t.Fatalf("usage: %d", code)
	}
	var row *usageAnswerRow
	for i := range got.Rows {
		if got.Rows[i].Key == k.ID {
			row = &got.Rows[i]
		}
	}
	if row == nil || row.PromptTokens != prompt || row.CompletionTokens != completion || row.Requests != requests {
		t.Fatalf("usage %+v, want %d requests, %d prompt and %d completion tokens", got, requests, prompt, completion)
	}

	t.Run("csv", func(t *testing.T) {
		code, hdr, body := withKey(t, "GET", entry+"/admin/v1/usage?group_by=key,model,node", "", testnode.Token, map[string]string{"Accept": "text/csv"})
		if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") ||
			!strings.HasPrefix(string(body), "key,model,node,requests") || !strings.Contains(string(body), k.ID+",chat,") {
			t.Fatalf("%d %v %s", code, hdr, body)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, q := range []string{"since=yesterday", "until=-5", "since=100&until=50", "group_by=colour", "format=xml"} {
			code, _, body := withKey(t, "GET", entry+"/admin/v1/usage?"+q, "", testnode.Token, nil)
			if code != http.StatusBadRequest || !families[0].errOK(body) {
				t.Errorf("%s: %d %s", q, code, body)
			}
		}
	})
}

type usageAnswerRow struct {
	Key                                      string
	Requests, PromptTokens, CompletionTokens int64
}

type usageAnswer struct {
	Rows []usageAnswerRow `json:"rows"`
}

func (r *usageAnswerRow) UnmarshalJSON(b []byte) error {
	var v struct {
		Key              string `json:"key"`
		Requests         int64  `json:"requests"`
		PromptTokens     int64  `json:"prompt_tokens"`
		CompletionTokens int64  `json:"completion_tokens"`
	}
	err := json.Unmarshal(b, &v)
	r.Key, r.Requests, r.PromptTokens, r.CompletionTokens = v.Key, v.Requests, v.PromptTokens, v.CompletionTokens
	return err
}

// TestKilledNodeLosesOnlyItsUnsentUsage: a node that dies loses the usage
// it had not written yet, and nothing it had written: its requests up to
// its last flush stay counted once. A node that stops gracefully writes
// what it has first.
func TestKilledNodeLosesOnlyItsUnsentUsage(t *testing.T) {
	for _, killed := range []bool{true, false} {
		name := map[bool]string{true: "killed", false: "stopped"}[killed]
		t.Run(name, func(t *testing.T) { unsentUsage(t, killed) })
	}
}

func unsentUsage(t *testing.T, killed bool) {
	c := startSimCluster(t, []simNode{{id: "a"}, {id: "b"}, {id: "victim"}}, func(cfg *node.Config) {
		cfg.Usage.Flush = time.Hour // flushed by hand below
	})
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":3}`, "a", "b", "victim")
	entry := c.url("a")
	k := newKey(t, entry, `{"name":"metered"}`)
	waitKeyEverywhere(t, c, k.Secret, http.StatusOK)
	chat := func(n int) {
		for range n {
			if code, _, body := withKey(t, "POST", c.url("victim")+"/v1/chat/completions", chatBody("chat"), k.Secret, nil); code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
		}
	}
	const written, unsent = 3, 2
	chat(written)
	if err := c.nodes["victim"].FlushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	chat(unsent)
	if killed {
		// Raft gone at once, as in a crash: nothing more can be written.
		c.nodes["victim"].Cluster().Close()
	}
	if err := c.nodes["victim"].Stop(context.Background()); err != nil && !killed {
		t.Fatal(err)
	}
	var got usageAnswer
	if code := admin(t, "GET", entry+"/admin/v1/usage?group_by=key", "", &got); code != http.StatusOK {
		t.Fatalf("usage: %d", code)
	}
	var counted int64
	for _, r := range got.Rows {
		if r.Key == k.ID {
			counted += r.Requests
		}
	}
	want := int64(written)
	if !killed {
		want += unsent
	}
	if counted != want {
		t.Fatalf("%d requests counted after the node went, want %d", counted, want)
	}
	t.Logf("FIGURE (%s): %d of %d requests counted after the node went; lost %d, all received after its last flush", map[bool]string{true: "killed", false: "stopped"}[killed], counted, written+unsent, written+unsent-counted)
}

// TestGracefulStopReportsKeyUse: a node that stops writes the last uses
// of the keys it served first, whatever its report interval.
func TestGracefulStopReportsKeyUse(t *testing.T) {
	c := startSimCluster(t, []simNode{{id: "a"}, {id: "b"}, {id: "c"}}, func(cfg *node.Config) {
		cfg.Audit.KeyUseReport = time.Hour // only the stop reports
	})
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":3}`, "a", "b", "c")
	k := newKey(t, c.url("a"), `{"name":"used"}`)
	waitKeyEverywhere(t, c, k.Secret, http.StatusOK)
	if code, _, body := withKey(t, "POST", c.url("b")+"/v1/chat/completions", chatBody("chat"), k.Secret, nil); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	if err := c.nodes["b"].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got keyView
	if code := admin(t, "GET", c.url("a")+"/admin/v1/keys/"+k.ID, "", &got); code != http.StatusOK || got.LastUsed == 0 {
		t.Fatalf("key after b stopped: %d, last_used %d", code, got.LastUsed)
	}
}
