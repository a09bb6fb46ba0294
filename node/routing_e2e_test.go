package node_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/scheduler"
)

// tinyTag is the Ollama tag of the tiny model the real Ollamas serve.
const tinyTag = "tiny:latest"

// ginChats counts the chat requests a real Ollama logged as done: Ollama
// logs one [GIN] line per request when its handler returns, which is all
// its logs say of a request (no id, no model).
func ginChats(rig *ollamarig.Rig) int {
	n := 0
	for _, line := range strings.Split(rig.Logs(), "\n") {
		if strings.HasPrefix(line, "[GIN]") && strings.Contains(line, `POST     "/api/chat"`) {
			n++
		}
	}
	return n
}

// ginChatDurations returns how long a real Ollama's chat handler ran for
// each chat request it logged, in order: the duration column of its
// [GIN] lines.
func ginChatDurations(rig *ollamarig.Rig) []time.Duration {
	var out []time.Duration
	for _, line := range strings.Split(rig.Logs(), "\n") {
		if !strings.HasPrefix(line, "[GIN]") || !strings.Contains(line, `POST     "/api/chat"`) {
			continue
		}
		// [GIN] date - time | status | duration | client | method "path"
		cols := strings.Split(line, "|")
		d, err := time.ParseDuration(strings.TrimSpace(cols[2]))
		if err != nil {
			d = -1
		}
		out = append(out, d)
	}
	return out
}

// decodeRate returns the tokens a second rig's Ollama decodes a short
// answer at.
func decodeRate(ctx context.Context, t *testing.T, rig *ollamarig.Rig) float64 {
	t.Helper()
	last := chatOnce(ctx, t, rig, "Tell a story", 128)
	return float64(last.EvalCount) / last.EvalDuration.Seconds()
}

// chatFor asks rig's Ollama for an answer of tokens tokens and returns
// how long its handler ran it, as its log says.
func chatFor(ctx context.Context, t *testing.T, rig *ollamarig.Rig, prompt string, tokens int) time.Duration {
	t.Helper()
	n := len(ginChatDurations(rig))
	if last := chatOnce(ctx, t, rig, prompt, tokens); last.EvalCount != tokens {
		t.Fatalf("an answer of %d tokens from %s ended after %d (%s)", tokens, rig.URL, last.EvalCount, last.DoneReason)
	}
	var ds []time.Duration
	testwait.For(t, 5*time.Second, "Ollama to log the chat", func() bool { ds = ginChatDurations(rig); return len(ds) > n })
	return ds[n]
}

func chatOnce(ctx context.Context, t *testing.T, rig *ollamarig.Rig, prompt string, tokens int) api.ChatResponse {
	t.Helper()
	// With the num_ctx the model is loaded with: another would make
	// Ollama reload it, and the agent's next look at it reload it back,
	// ending this chat.
	ps, err := rig.Client().ListRunning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	numCtx := 0
	for _, m := range ps.Models {
		if m.Name == tinyTag {
			numCtx = m.ContextLength
		}
	}
	if numCtx == 0 {
		t.Fatalf("%s does not run %s: %+v", rig.URL, tinyTag, ps.Models)
	}
	var last api.ChatResponse
	err = rig.Client().Chat(ctx, &api.ChatRequest{Model: tinyTag,
		Messages: []api.Message{{Role: "user", Content: prompt}},
		Options:  map[string]any{"num_predict": tokens, "num_ctx": numCtx}},
		func(r api.ChatResponse) error { last = r; return nil })
	if err != nil || !last.Done || last.EvalCount == 0 {
		t.Fatalf("an answer from %s: %v (done %v %q, %d tokens)", rig.URL, err, last.Done, last.DoneReason, last.EvalCount)
	}
	return last
}

// TestRoutingOnRealOllama runs three nodes, two labelled EU and one US,
// each over its own real Ollama holding the tiny model, deployed on all
// three. Requests entering every node are served and say where, as the
// Ollamas' own logs confirm; EU-only requests never reach the US Ollama;
// a hang-up on a forwarded stream frees the remote Ollama; and killing
// one Ollama mid-traffic fails no request that had not started.
func TestRoutingOnRealOllama(t *testing.T) {
	ollamarig.Require(t)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ids := []string{"eu1", "eu2", "us"}
	jurisdiction := map[string]string{"eu1": "EU", "eu2": "EU", "us": "US"}
	// Round robin sends every node's share of requests to the Ollama that
	// is killed below, whatever their speeds.
	rigs, nodes := startOllamaCluster(ctx, t, ids, func(id string) string { return "jurisdiction=" + jurisdiction[id] },
		func(c *node.Config) { c.Routing.Policy = "round-robin" })
	url := func(id string) string { return nodes[id].URL() }
	create(t, url(ids[0]), `{"name":"tiny","model":"tiny","replicas":3}`)
	for _, id := range ids {
		waitDep(t, url(id), "tiny?stale=true", readyOn(3))
	}
	served := func() map[string]int {
		out := map[string]int{}
		for id, r := range rigs {
			out[id] = ginChats(r)
		}
		return out
	}

	t.Run("every node serves and says where", func(t *testing.T) {
		for _, entry := range ids {
			for _, s := range chatShapes {
				t.Run(entry+"/"+s.name, func(t *testing.T) {
					before := served()
					a, err := call{url: url(entry), shape: s, body: s.body("tiny", "Say hi", 4)}.do(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if err := a.complete(s); err != nil {
						t.Fatal(err)
					}
					by := a.header.Get("Sovra-Node")
					checkRoutingHeaders(t, a.header, tinyTag, by, 1)
					var after map[string]int
					testwait.Until(t, 5*time.Second, func() bool { after = served(); return after[by] == before[by]+1 },
						func() string { return fmt.Sprintf("the Ollama of %s logged no chat (%v -> %v)", by, before, after) })
					for _, id := range ids {
						if id != by && after[id] != before[id] {
							t.Errorf("the Ollama of %s logged a chat that %s served", id, by)
						}
					}
				})
			}
		}
	})

	t.Run("EU-only requests never reach the US Ollama", func(t *testing.T) {
		before := served()
		l := startChatLoad(ids, url, "tiny", 3, 4, map[string]string{"Sovra-Jurisdiction": "EU"})
		l.waitCompleted(t, time.Time{}, 18)
		outcomes := l.stop()
		for _, o := range outcomes {
			if err := o.answer.complete(o.shape); o.err != nil || err != nil {
				t.Fatalf("%s via %s: %v %v", o.shape.name, o.entry, o.err, err)
			}
			if by := o.answer.header.Get("Sovra-Node"); jurisdiction[by] != "EU" {
				t.Errorf("%s via %s served by %q", o.shape.name, o.entry, by)
			}
		}
		var after map[string]int
		testwait.Until(t, 5*time.Second, func() bool {
			after = served()
			return after["eu1"]+after["eu2"]-before["eu1"]-before["eu2"] >= len(outcomes)
		}, func() string {
			return fmt.Sprintf("the EU Ollamas logged %v -> %v, want %d more", before, after, len(outcomes))
		})
		if after["us"] != before["us"] {
			t.Errorf("the US Ollama logged %d of the EU-only chats", after["us"]-before["us"])
		}
	})

	t.Run("a hang-up on a forwarded stream frees the remote Ollama", func(t *testing.T) {
		for _, s := range []shape{openAIChatStream, ollamaChatStream} {
			t.Run(s.name, func(t *testing.T) {
				// The chat asks for as many tokens as the faster EU Ollama
				// decodes short answers in two seconds (at most as many as
				// a request may ask for, the context); long ones decode
				// slower. The tiny model, sampling with its seed, does not
				// end this answer before its bound.
				var rate float64 // tokens a second
				for id, j := range jurisdiction {
					if j == "EU" {
						rate = max(rate, decodeRate(ctx, t, rigs[id]))
					}
				}
				tokens := min(max(int(2*rate), 256), scheduler.DefaultContext)
				body := s.body("tiny", "Tell a long story", tokens)
				before := served()
				var hungUp time.Time
				// Entering the US node, an EU-only request is forwarded.
				a, err := call{url: url("us"), shape: s, body: body,
					header:     map[string]string{"Sovra-Jurisdiction": "EU"},
					firstFrame: func() bool { hungUp = time.Now(); return false }}.do(ctx)
				if err != nil {
					t.Fatal(err)
				}
				by := a.header.Get("Sovra-Node")
				if a.status != http.StatusOK || hungUp.IsZero() || jurisdiction[by] != "EU" {
					t.Fatalf("no first frame from an EU node: %d %s %v", a.status, a.body, a.header)
				}
				testwait.Until(t, 30*time.Second, func() bool {
					return served()[by] > before[by] && metric(t, url(by), "sovra_running_requests", "model="+tinyTag) == 0
				}, func() string {
					return fmt.Sprintf("%v after the hang-up, the Ollama of %s still runs the chat", time.Since(hungUp), by)
				})
				// The same chat, asked of the same Ollama with nobody
				// hanging up, runs to its bound. Ollama's own log says how
				// long its handler ran each: the hang-up must have cut the
				// first short, whatever the machine's speed.
				full := chatFor(ctx, t, rigs[by], "Tell a long story", tokens)
				took := ginChatDurations(rigs[by])[before[by]]
				t.Logf("the Ollama of %s ran the forwarded chat for %v after a hang-up at its first frame; %d tokens without one took it %v",
					by, took, tokens, full)
				if took < 0 || 4*took > full {
					t.Errorf("the Ollama of %s ran the chat for %v after a hang-up at its first frame, the whole answer %v", by, took, full)
				}
			})
		}
	})

	t.Run("an Ollama killed mid-traffic fails no request that had not started", func(t *testing.T) {
		const victim = "eu2"
		before := served()
		l := startChatLoad(ids, url, "tiny", 3, 4, nil)
		t.Cleanup(func() { l.stop() })
		l.waitCompleted(t, time.Time{}, 12)
		testwait.Until(t, 10*time.Second, func() bool { return served()[victim] > before[victim] },
			func() string { return "the victim served nothing before the kill" })
		killed := time.Now()
		rigs[victim].Stop()
		l.waitCompleted(t, killed, 48)
		outcomes := l.stop()
		failed, cut, retried := judgeKill(outcomes, victim, killed)
		retries := 0.0
		for _, id := range ids {
			retries += metric(t, url(id), "sovra_routing_retries_total", "model="+tinyTag)
		}
		t.Logf("%d requests, %d streams cut in band by the kill, %d answers after a retry, %v retries counted",
			len(outcomes), cut, retried, retries)
		if len(failed) > 0 {
			t.Errorf("%d of %d requests failed:\n%s", len(failed), len(outcomes), strings.Join(slices.Compact(failed), "\n"))
		}
		// The kill must have touched traffic: a request retried elsewhere,
		// or a stream cut in band. (Once a cut stream has made the victim
		// report its replica failed, later requests avoid it without a
		// retry, so retries alone can be 0.)
		if retries == 0 && cut == 0 {
			t.Errorf("the kill touched no request: nothing retried, no stream cut")
		}
	})
}
