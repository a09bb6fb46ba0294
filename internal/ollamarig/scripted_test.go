package ollamarig

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"
	"github.com/ollama/ollama/thinking"
	"github.com/ollama/ollama/types/model"
)

// weatherTool is the tool the tool caller's script calls.
func weatherTool(t *testing.T) api.Tool {
	t.Helper()
	var tool api.Tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}`), &tool); err != nil {
		t.Fatal(err)
	}
	return tool
}

// TestThinkerTemplate checks, without a server, that ThinkerTemplate has
// the thinking tags Ollama infers, renders like Template with thinking on
// or unset, and ends with an empty thinking block with thinking off.
func TestThinkerTemplate(t *testing.T) {
	tmpl, err := template.Parse(ThinkerTemplate)
	if err != nil {
		t.Fatal(err)
	}
	if open, closing := thinking.InferTags(tmpl.Template); open != "<think>" || closing != "</think>" {
		t.Errorf("thinking tags = %q %q, want <think> </think>", open, closing)
	}
	plain, err := template.Parse(Template)
	if err != nil {
		t.Fatal(err)
	}
	render := func(tm *template.Template, v template.Values) string {
		t.Helper()
		var b strings.Builder
		if err := tm.Execute(&b, v); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	msgs := []api.Message{
		{Role: "user", Content: "hi"},
		{Role: "assistant", Content: "yo", Thinking: "hmm"},
		{Role: "user", Content: "and?"},
	}
	for _, v := range []template.Values{
		{Messages: msgs},
		{Messages: msgs, Think: true, IsThinkSet: true},
	} {
		if got, want := render(tmpl, v), render(plain, v); got != want {
			t.Errorf("thinking on or unset: rendered %q, Template renders %q", got, want)
		}
	}
	off := render(tmpl, template.Values{Messages: msgs, IsThinkSet: true})
	if !strings.HasSuffix(off, "<|user|>and?\n<|assistant|><think></think>") {
		t.Errorf("thinking off: rendered %q, want it to end with an empty thinking block", off)
	}
}

// TestScriptedModels creates the tool caller and the thinker on the real
// server and checks that Ollama itself turns their fixed output into a
// tool call and into thinking apart from the answer, on the llama.cpp
// runner Ollama uses for llama models and on its own engine.
func TestScriptedModels(t *testing.T) {
	Require(t)
	t.Run("llama.cpp runner", func(t *testing.T) { testScripted(t, false) })
	t.Run("ollama engine", func(t *testing.T) { testScripted(t, true) })
}

func testScripted(t *testing.T, newEngine bool) {
	var env []string
	if newEngine {
		env = []string{"OLLAMA_NEW_ENGINE=1"}
	}
	r := Start(t, Options{Env: env})
	t.Cleanup(func() {
		// The model runners the server started must be of the engine
		// asked for.
		runners := 0
		for line := range strings.Lines(r.Logs()) {
			if !strings.Contains(line, "starting runner") || !strings.Contains(line, " --model ") {
				continue
			}
			runners++
			if strings.Contains(line, "--ollama-engine") != newEngine {
				t.Errorf("runner of the wrong engine (new engine %v): %s", newEngine, line)
			}
		}
		if runners == 0 {
			t.Error("no model runner start in the server log")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := r.Client()

	begin := time.Now()
	if err := r.CreateToolCaller(ctx, "tool-caller"); err != nil {
		t.Fatal(err)
	}
	if err := r.CreateThinker(ctx, "thinker"); err != nil {
		t.Fatal(err)
	}
	t.Logf("created both scripted models in %v", time.Since(begin))

	// Both templates render tools and thinking.
	for _, name := range []string{"tool-caller", "thinker"} {
		show, err := c.Show(ctx, &api.ShowRequest{Model: name})
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range []model.Capability{model.CapabilityCompletion, model.CapabilityTools, model.CapabilityThinking} {
			if !slices.Contains(show.Capabilities, cp) {
				t.Errorf("%s capabilities %v lack %s", name, show.Capabilities, cp)
			}
		}
	}

	// chat sends req streamed or not and returns the chunks it got; a
	// non-streamed answer is one chunk. The model must stop by itself after
	// exactly tokens tokens: the script's pieces it emits, and </s>.
	chat := func(t *testing.T, req api.ChatRequest, stream bool, tokens int) []api.ChatResponse {
		t.Helper()
		req.Stream = &stream
		var got []api.ChatResponse
		start := time.Now()
		if err := c.Chat(ctx, &req, func(cr api.ChatResponse) error { got = append(got, cr); return nil }); err != nil {
			t.Fatalf("chat: %v", err)
		}
		if len(got) == 0 {
			t.Fatal("chat gave no response")
		}
		last := got[len(got)-1]
		t.Logf("%s stream=%v: %d chunks in %v, eval_count=%d prompt_eval_count=%d done_reason=%s",
			req.Model, stream, len(got), time.Since(start), last.EvalCount, last.PromptEvalCount, last.DoneReason)
		if !stream && len(got) != 1 {
			t.Errorf("non-streamed chat gave %d responses", len(got))
		}
		for i, ch := range got {
			if ch.Done != (i == len(got)-1) {
				t.Errorf("chunk %d of %d: done = %v", i, len(got), ch.Done)
			}
		}
		if last.DoneReason != "stop" || last.EvalCount != tokens {
			t.Errorf("done_reason %q after %d tokens, want stop after %d", last.DoneReason, last.EvalCount, tokens)
		}
		return got
	}
	type joined struct {
		content, thinking string
		calls             []api.ToolCall
		firstContent      int // index of the first chunk with content, -1 if none
		lastThinking      int // index of the last chunk with thinking, -1 if none
	}
	join := func(chunks []api.ChatResponse) joined {
		j := joined{firstContent: -1, lastThinking: -1}
		var content, thinking strings.Builder
		for i, ch := range chunks {
			if ch.Message.Content != "" && j.firstContent < 0 {
				j.firstContent = i
			}
			if ch.Message.Thinking != "" {
				j.lastThinking = i
			}
			content.WriteString(ch.Message.Content)
			thinking.WriteString(ch.Message.Thinking)
			j.calls = append(j.calls, ch.Message.ToolCalls...)
		}
		j.content, j.thinking = content.String(), thinking.String()
		return j
	}
	var wantArgs map[string]any
	if err := json.Unmarshal([]byte(ToolCallArguments), &wantArgs); err != nil {
		t.Fatal(err)
	}
	user := []api.Message{{Role: "user", Content: "What is the weather in Paris?"}}
	calls, thinks := len(ToolCallScript())+1, len(ThinkScript())+1

	for _, stream := range []bool{false, true} {
		mode := map[bool]string{false: "non-streamed", true: "streamed"}[stream]

		t.Run("tool call "+mode, func(t *testing.T) {
			j := join(chat(t, api.ChatRequest{Model: "tool-caller", Messages: user, Tools: api.Tools{weatherTool(t)}}, stream, calls))
			if len(j.calls) != 1 {
				t.Fatalf("tool calls = %+v, want one; content %q", j.calls, j.content)
			}
			fn := j.calls[0].Function
			args, _ := json.Marshal(fn.Arguments)
			var got map[string]any
			if err := json.Unmarshal(args, &got); err != nil {
				t.Fatal(err)
			}
			if fn.Name != ToolCallName || len(got) != len(wantArgs) || got["city"] != wantArgs["city"] {
				t.Errorf("tool call %s(%s), want %s(%s)", fn.Name, args, ToolCallName, ToolCallArguments)
			}
			if j.content != "" || j.thinking != "" {
				t.Errorf("content %q, thinking %q beside the tool call, want none", j.content, j.thinking)
			}
		})

		t.Run("tool caller without tools "+mode, func(t *testing.T) {
			j := join(chat(t, api.ChatRequest{Model: "tool-caller", Messages: user}, stream, calls))
			if want := strings.Join(ToolCallScript(), ""); j.content != want || len(j.calls) != 0 {
				t.Errorf("content %q with %d tool calls, want the script text %q", j.content, len(j.calls), want)
			}
		})

		t.Run("thinking "+mode, func(t *testing.T) {
			think := api.ThinkValue{Value: true}
			j := join(chat(t, api.ChatRequest{Model: "thinker", Messages: user, Think: &think}, stream, thinks))
			if j.thinking != Thought || j.content != Answer {
				t.Errorf("thinking %q, content %q; want %q, %q", j.thinking, j.content, Thought, Answer)
			}
			if j.firstContent >= 0 && j.lastThinking > j.firstContent {
				t.Errorf("thinking (last in chunk %d) after content (first in chunk %d)", j.lastThinking, j.firstContent)
			}
		})

		t.Run("think unset "+mode, func(t *testing.T) {
			// Ollama turns thinking on for models that can think.
			j := join(chat(t, api.ChatRequest{Model: "thinker", Messages: user}, stream, thinks))
			if j.thinking != Thought || j.content != Answer {
				t.Errorf("thinking %q, content %q; want %q, %q", j.thinking, j.content, Thought, Answer)
			}
		})

		t.Run("think off "+mode, func(t *testing.T) {
			// The prompt ends with the empty thinking block, so the model
			// goes on from </think>: only the answer, then </s>.
			think := api.ThinkValue{Value: false}
			j := join(chat(t, api.ChatRequest{Model: "thinker", Messages: user, Think: &think}, stream, 2))
			if j.thinking != "" || j.content != Answer {
				t.Errorf("thinking %q, content %q; want none, %q", j.thinking, j.content, Answer)
			}
		})
	}

	t.Run("script beats sampling", func(t *testing.T) {
		// The request's own sampling settings override the model's greedy
		// ones; the script's margin still decides every token.
		think := api.ThinkValue{Value: true}
		for seed := range 5 {
			j := join(chat(t, api.ChatRequest{
				Model: "thinker", Messages: user, Think: &think,
				Options: map[string]any{"temperature": 2, "top_k": 1000, "top_p": 1, "seed": seed},
			}, false, thinks))
			if j.thinking != Thought || j.content != Answer {
				t.Errorf("seed %d: thinking %q, content %q", seed, j.thinking, j.content)
			}
		}
	})

	t.Run("history", func(t *testing.T) {
		// A conversation that already holds a call and its result still
		// ends with the marker: the model calls again.
		msgs := append(slices.Clone(user),
			api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: ToolCallName}}}},
			api.Message{Role: "tool", Content: "sunny"},
		)
		j := join(chat(t, api.ChatRequest{Model: "tool-caller", Messages: msgs, Tools: api.Tools{weatherTool(t)}}, false, calls))
		if len(j.calls) != 1 || j.calls[0].Function.Name != ToolCallName {
			t.Errorf("tool calls %+v, content %q", j.calls, j.content)
		}
	})

	t.Run("generate", func(t *testing.T) {
		stream := false
		for _, on := range []bool{true, false} {
			think := api.ThinkValue{Value: on}
			var resp api.GenerateResponse
			err := c.Generate(ctx, &api.GenerateRequest{Model: "thinker", Prompt: "Hi", Think: &think, Stream: &stream},
				func(gr api.GenerateResponse) error { resp = gr; return nil })
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if on {
				want = Thought
			}
			if resp.Thinking != want || resp.Response != Answer || resp.DoneReason != "stop" {
				t.Errorf("think=%v: thinking %q, response %q, done_reason %q", on, resp.Thinking, resp.Response, resp.DoneReason)
			}
		}
	})
}
