package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
)

// TestScriptedOllamaThroughNode checks sovra's translation of tool calls
// and reasoning end to end: the real Ollama serves scripted tiny models
// that always call get_weather for Paris, or think and then answer, and
// the official OpenAI Go SDK talks to a node in front of it.
func TestScriptedOllamaThroughNode(t *testing.T) {
	ollamarig.Require(t)
	rig := ollamarig.Start(t, ollamarig.Options{NumParallel: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := rig.CreateToolCaller(ctx, "tool-caller"); err != nil {
		t.Fatal(err)
	}
	if err := rig.CreateThinker(ctx, "thinker"); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, rig.URL)
	c := sdk(n.URL())

	t.Run("tool call", func(t *testing.T) {
		p := userChat("tool-caller", "What is the weather in Paris?")
		p.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
		resp, err := c.Chat.Completions.New(testCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		msg := resp.Choices[0].Message
		checkWeatherCall(t, msg.ToolCalls, resp.Choices[0].FinishReason)
		checkParis(t, msg.ToolCalls[0].Function.Arguments)
		if msg.Content != "" {
			t.Errorf("content %q beside the tool call", msg.Content)
		}
		if resp.Usage.CompletionTokens != int64(len(ollamarig.ToolCallScript())+1) {
			t.Errorf("usage %+v, want the script's %d completion tokens", resp.Usage, len(ollamarig.ToolCallScript())+1)
		}
	})

	t.Run("tool call streamed", func(t *testing.T) {
		p := userChat("tool-caller", "What is the weather in Paris?")
		p.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
		st := c.Chat.Completions.NewStreaming(testCtx(t), p)
		acc := openai.ChatCompletionAccumulator{}
		finished := 0
		for st.Next() {
			acc.AddChunk(st.Current())
			if _, ok := acc.JustFinishedToolCall(); ok {
				finished++
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 {
			t.Fatalf("%d choices in the stream", len(acc.Choices))
		}
		msg := acc.Choices[0].Message
		checkWeatherCall(t, msg.ToolCalls, acc.Choices[0].FinishReason)
		checkParis(t, msg.ToolCalls[0].Function.Arguments)
		if msg.Content != "" {
			t.Errorf("content %q beside the tool call", msg.Content)
		}
		// The SDK reports a tool call as just finished when a later chunk
		// no longer adds to it, as the one with the finish reason does;
		// applications act on calls there.
		if finished != 1 {
			t.Errorf("the accumulator saw %d tool calls finish, want one", finished)
		}
	})

	t.Run("reasoning", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(testCtx(t), userChat("thinker", "Hi!"))
		if err != nil {
			t.Fatal(err)
		}
		msg := resp.Choices[0].Message
		var extra struct {
			ReasoningContent *string `json:"reasoning_content"`
			Reasoning        *string `json:"reasoning"`
		}
		if err := json.Unmarshal([]byte(msg.RawJSON()), &extra); err != nil {
			t.Fatal(err)
		}
		if extra.ReasoningContent == nil || *extra.ReasoningContent != ollamarig.Thought || msg.Content != ollamarig.Answer {
			t.Errorf("message %s: want reasoning_content %q apart from content %q", msg.RawJSON(), ollamarig.Thought, ollamarig.Answer)
		}
		if extra.Reasoning != nil && *extra.Reasoning != ollamarig.Thought {
			t.Errorf("reasoning %q, want %q", *extra.Reasoning, ollamarig.Thought)
		}
		if fr := resp.Choices[0].FinishReason; fr != "stop" {
			t.Errorf("finish reason %q, want stop", fr)
		}
	})

	t.Run("reasoning streamed", func(t *testing.T) {
		st := c.Chat.Completions.NewStreaming(testCtx(t), userChat("thinker", "Hi!"))
		var thinking, answer strings.Builder
		var finish string
		for st.Next() {
			for _, ch := range st.Current().Choices {
				var d struct {
					ReasoningContent string `json:"reasoning_content"`
				}
				if raw := ch.Delta.RawJSON(); raw != "" {
					if err := json.Unmarshal([]byte(raw), &d); err != nil {
						t.Fatalf("delta %s: %v", raw, err)
					}
				}
				if d.ReasoningContent != "" && answer.Len() > 0 {
					t.Errorf("reasoning %q after content %q", d.ReasoningContent, answer.String())
				}
				thinking.WriteString(d.ReasoningContent)
				answer.WriteString(ch.Delta.Content)
				if ch.FinishReason != "" {
					finish = ch.FinishReason
				}
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if thinking.String() != ollamarig.Thought || answer.String() != ollamarig.Answer || finish != "stop" {
			t.Errorf("streamed reasoning %q, content %q, finish %q; want %q, %q, stop", thinking.String(), answer.String(), finish, ollamarig.Thought, ollamarig.Answer)
		}
	})

	t.Run("reasoning effort levels", func(t *testing.T) {
		// Ollama takes levels only for some models; sovra falls back to
		// plain thinking for the others rather than failing the request.
		for _, effort := range []shared.ReasoningEffort{shared.ReasoningEffortLow, shared.ReasoningEffortMedium, shared.ReasoningEffortHigh} {
			p := userChat("thinker", "Hi!")
			p.ReasoningEffort = effort
			resp, err := c.Chat.Completions.New(testCtx(t), p)
			if err != nil {
				t.Fatalf("effort %s: %v", effort, err)
			}
			var extra struct {
				ReasoningContent string `json:"reasoning_content"`
			}
			_ = json.Unmarshal([]byte(resp.Choices[0].Message.RawJSON()), &extra)
			if extra.ReasoningContent != ollamarig.Thought || resp.Choices[0].Message.Content != ollamarig.Answer {
				t.Errorf("effort %s: reasoning_content %q, content %q", effort, extra.ReasoningContent, resp.Choices[0].Message.Content)
			}
		}
	})

	t.Run("reasoning effort none", func(t *testing.T) {
		p := userChat("thinker", "Hi!")
		p.ReasoningEffort = shared.ReasoningEffortNone
		resp, err := c.Chat.Completions.New(testCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		msg := resp.Choices[0].Message
		var extra struct {
			ReasoningContent string `json:"reasoning_content"`
		}
		if err := json.Unmarshal([]byte(msg.RawJSON()), &extra); err != nil {
			t.Fatal(err)
		}
		if extra.ReasoningContent != "" || msg.Content != ollamarig.Answer {
			t.Errorf("reasoning_content %q, content %q; want none, %q", extra.ReasoningContent, msg.Content, ollamarig.Answer)
		}
	})

	t.Run("anthropic and responses", func(t *testing.T) {
		type block struct {
			Type     string          `json:"type"`
			Text     string          `json:"text"`
			Thinking string          `json:"thinking"`
			Name     string          `json:"name"`
			Input    json.RawMessage `json:"input"`
		}
		var m struct {
			Content    []block `json:"content"`
			StopReason string  `json:"stop_reason"`
		}
		postJSON(t, n.URL()+"/v1/messages", `{"model":"tool-caller","max_tokens":50,"messages":[{"role":"user","content":"Paris?"}],`+
			`"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]}`, &m)
		if len(m.Content) != 1 || m.Content[0].Type != "tool_use" || m.Content[0].Name != ollamarig.ToolCallName || m.StopReason != "tool_use" {
			t.Errorf("messages with tools: %+v", m)
		} else {
			checkParis(t, string(m.Content[0].Input))
		}
		m.Content = nil
		postJSON(t, n.URL()+"/v1/messages", `{"model":"thinker","max_tokens":50,"messages":[{"role":"user","content":"Hi!"}],`+
			`"thinking":{"type":"enabled","budget_tokens":100}}`, &m)
		if len(m.Content) != 2 || m.Content[0].Type != "thinking" || m.Content[0].Thinking != ollamarig.Thought ||
			m.Content[1].Type != "text" || m.Content[1].Text != ollamarig.Answer {
			t.Errorf("messages with thinking: %+v, want thinking %q, then text %q", m.Content, ollamarig.Thought, ollamarig.Answer)
		}

		var r struct {
			Output []struct {
				Type    string `json:"type"`
				Summary []struct {
					Text string `json:"text"`
				} `json:"summary"`
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			} `json:"output"`
		}
		postJSON(t, n.URL()+"/v1/responses", `{"model":"thinker","input":"Hi!"}`, &r)
		if len(r.Output) != 2 || r.Output[0].Type != "reasoning" || len(r.Output[0].Summary) != 1 || r.Output[0].Summary[0].Text != ollamarig.Thought ||
			r.Output[1].Type != "message" || len(r.Output[1].Content) != 1 || r.Output[1].Content[0].Text != ollamarig.Answer {
			t.Errorf("responses with reasoning: %+v", r)
		}
	})

	t.Run("ollama client", func(t *testing.T) {
		// The native API passes tool calls and thinking through.
		base, _ := url.Parse(n.URL())
		oc := api.NewClient(base, testauth.Client)
		var tool api.Tool
		if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}`), &tool); err != nil {
			t.Fatal(err)
		}
		var calls []api.ToolCall
		var thinking, content strings.Builder
		user := []api.Message{{Role: "user", Content: "Paris?"}}
		err := oc.Chat(testCtx(t), &api.ChatRequest{Model: "tool-caller", Messages: user, Tools: api.Tools{tool}}, func(r api.ChatResponse) error {
			calls = append(calls, r.Message.ToolCalls...)
			return nil
		})
		if err != nil || len(calls) != 1 || calls[0].Function.Name != ollamarig.ToolCallName {
			t.Errorf("tool calls %+v, %v", calls, err)
		} else {
			args, _ := json.Marshal(calls[0].Function.Arguments)
			checkParis(t, string(args))
		}
		err = oc.Chat(testCtx(t), &api.ChatRequest{Model: "thinker", Messages: user}, func(r api.ChatResponse) error {
			thinking.WriteString(r.Message.Thinking)
			content.WriteString(r.Message.Content)
			return nil
		})
		if err != nil || thinking.String() != ollamarig.Thought || content.String() != ollamarig.Answer {
			t.Errorf("thinking %q, content %q, %v", thinking.String(), content.String(), err)
		}
	})
}

// checkParis checks that a tool call's JSON arguments are exactly the
// scripted ones.
func checkParis(t *testing.T, arguments string) {
	t.Helper()
	var got, want map[string]any
	if err := json.Unmarshal([]byte(ollamarig.ToolCallArguments), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(arguments), &got); err != nil || len(got) != len(want) || got["city"] != want["city"] {
		t.Errorf("tool call arguments %s, want %s", arguments, ollamarig.ToolCallArguments)
	}
}
