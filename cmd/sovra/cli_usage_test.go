package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// usageTotals are the sums a key's chats reported.
type usageTotals struct{ requests, prompt, completion int64 }

// TestCLIUsage sends chats with a key through two nodes and checks that
// `sovra usage` shows them, as a table, JSON and CSV, as the cluster
// holds them.
func TestCLIUsage(t *testing.T) {
	// Nodes write their usage every 100ms instead of every 10s.
	c := testcluster.Start(t, []testcluster.Spec{{ID: "a"}, {ID: "b"}, {ID: "c"}},
		func(cfg *node.Config) { cfg.Usage.Flush = 100 * time.Millisecond })
	env := clusterEnv(t, c, "b")
	cl := c.Client("a")

	var k client.Key
	sovra(t, env, "key", "create", "--name", "metered", "-o", "json").ok(t).decode(t, &k)
	waitKeyAnswers(t, c, k.Secret, http.StatusOK)
	var sent usageTotals
	for i, id := range []string{"a", "a", "a", "c", "c"} {
		p, cmpl := chatWith(t, c.URL(id), k.Secret, fmt.Sprintf("hello number %d", i))
		sent = usageTotals{sent.requests + 1, sent.prompt + p, sent.completion + cmpl}
	}
	byKey := client.UsageQuery{GroupBy: []string{"key"}}
	testwait.Until(t, 10*time.Second, func() bool { return keyUsage(t, cl, byKey, k.ID) == sent }, func() string {
		return fmt.Sprintf("the usage of %d requests (%+v now)", sent.requests, keyUsage(t, cl, byKey, k.ID))
	})

	t.Run("json", func(t *testing.T) {
		var got client.UsageReport
		sovra(t, env, "usage", "--since", "24h", "-o", "json").ok(t).decode(t, &got)
		held, err := cl.Usage(context.Background(), client.UsageQuery{Since: time.Unix(got.Since, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(time.Unix(got.Since, 0)); d < 24*time.Hour || d > 24*time.Hour+time.Minute || got.Until != 0 {
			t.Fatalf("window %d to %d", got.Since, got.Until)
		}
		if !reflect.DeepEqual(got, *held) || rowsTotal(got.Rows, k.ID) != sent {
			t.Fatalf("usage %+v, the cluster holds %+v, sent %+v", got, held, sent)
		}
		for _, r := range got.Rows {
			if r.Model != "llama3.2:1b" || !slices.Contains(c.IDs, r.Node) || r.Errors != 0 {
				t.Fatalf("row %+v", r)
			}
		}

		var byKey client.UsageReport
		sovra(t, env, "usage", "--by", "key", "--since", "2000-01-01", "-o", "json").ok(t).decode(t, &byKey)
		if len(byKey.Rows) != 1 || byKey.Rows[0].Model != "" || byKey.Rows[0].Node != "" || rowsTotal(byKey.Rows, k.ID) != sent {
			t.Fatalf("by key: %+v", byKey.Rows)
		}
		var old client.UsageReport
		sovra(t, env, "usage", "--since", "2000-01-01", "--until", "2000-01-02T00:00:00Z", "-o", "json").ok(t).decode(t, &old)
		if len(old.Rows) != 0 || old.Since != 946684800 || old.Until != 946771200 {
			t.Fatalf("usage of 2000: %+v", old)
		}
	})

	t.Run("csv", func(t *testing.T) {
		r := sovra(t, env, "usage", "--by", "model,key", "--since", "7d", "-o", "csv").ok(t)
		recs, err := csv.NewReader(strings.NewReader(r.out)).ReadAll()
		if err != nil {
			t.Fatalf("not CSV: %v\n%s", err, r.out)
		}
		want := [][]string{{"key", "model", "node", "requests", "errors", "prompt_tokens", "completion_tokens", "ttft_ms_avg",
			"energy_joules", "energy_estimated", "joules_per_1k_tokens"},
			{k.ID, "llama3.2:1b", "", "5", "0", strconv.FormatInt(sent.prompt, 10), strconv.FormatInt(sent.completion, 10)}}
		if len(recs) != 2 || !reflect.DeepEqual(recs[0], want[0]) || !reflect.DeepEqual(recs[1][:7], want[1]) {
			t.Fatalf("csv %q, want %q", recs, want)
		}
	})

	t.Run("table", func(t *testing.T) {
		r := sovra(t, env, "usage", "--by", "key,model").ok(t)
		lines := r.lines()
		if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "KEY MODEL REQUESTS ERRORS PROMPT TOKENS COMPLETION TOKENS TTFT AVG (ms) J/1K TOKENS" {
			t.Fatalf("table:\n%s", r.out)
		}
		cells := fmt.Sprintf("%d 0 %d %d", sent.requests, sent.prompt, sent.completion)
		if f := strings.Fields(lines[1]); f[0] != k.ID || f[1] != "llama3.2:1b" || strings.Join(f[2:6], " ") != cells {
			t.Fatalf("row %q, want %s", lines[1], cells)
		}
		// The test cluster has no GPUs: no energy.
		if f := strings.Fields(lines[1]); f[len(f)-1] != "-" {
			t.Fatalf("row %q has energy", lines[1])
		}
		if f := strings.Fields(lines[2]); f[0] != "TOTAL" || strings.Join(f[1:], " ") != cells+" - -" {
			t.Fatalf("total %q, want %s", lines[2], cells)
		}
		r = sovra(t, env, "usage", "--since", "2000-01-01", "--until", "2000-01-02").ok(t)
		if lines := r.lines(); len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "TOTAL 0 0 0 0 - -" {
			t.Fatalf("empty window:\n%s", r.out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		sovra(t, env, "usage", "--since", "yesterday").fails(t, cli.ExitUsage, "--since", "7d")
		sovra(t, env, "usage", "--until", "-3h").fails(t, cli.ExitUsage, "--until")
		sovra(t, env, "usage", "--by", "colour").fails(t, cli.ExitUsage, `--by "colour"`, "key, model and node")
		sovra(t, env, "usage", "--by", "").fails(t, cli.ExitUsage, "--by")
		sovra(t, env, "usage", "--since", "2001-01-01", "--until", "2000-01-01").fails(t, cli.ExitUsage, "--until must be after --since")
		sovra(t, env, "usage", "-o", "xml").fails(t, cli.ExitUsage, "csv")
		sovra(t, env, "usage", "extra").fails(t, cli.ExitUsage, "takes no arguments")
		sovra(t, env, "usage", "--bogus").fails(t, cli.ExitUsage, "unknown flag")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "usage").fails(t, cli.ExitError, "refused the credential")
		sovra(t, env.with("SOVRA_TOKEN", "wrong"), "usage", "-o", "csv").fails(t, cli.ExitError, "refused the credential")
	})
}

// chatWith sends a chat with secret to a node and returns the tokens it
// reported.
func chatWith(t *testing.T, url, secret, prompt string) (int64, int64) {
	t.Helper()
	body := `{"model":"llama3.2:1b","stream":false,"max_tokens":8,"messages":[{"role":"user","content":"` + prompt + `"}]}`
	code, b := keyRequest(t, http.MethodPost, url+"/v1/chat/completions", secret, body)
	var r struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &r) != nil || r.Usage.PromptTokens == 0 || r.Usage.CompletionTokens == 0 {
		t.Fatalf("chat: %d %s", code, b)
	}
	return r.Usage.PromptTokens, r.Usage.CompletionTokens
}

// keyUsage is the usage the cluster holds for a key.
func keyUsage(t *testing.T, cl *client.Client, q client.UsageQuery, id string) usageTotals {
	t.Helper()
	r, err := cl.Usage(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return rowsTotal(r.Rows, id)
}

func rowsTotal(rows []client.UsageRow, id string) usageTotals {
	var s usageTotals
	for _, r := range rows {
		if r.Key == id {
			s = usageTotals{s.requests + r.Requests, s.prompt + r.PromptTokens, s.completion + r.CompletionTokens}
		}
	}
	return s
}
