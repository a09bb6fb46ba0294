package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
)

// sdk returns the official OpenAI Go client pointed at a node, with the
// SDK's own retries off so every error is seen as sovra sent it.
func sdk(nodeURL string) openai.Client {
	return openai.NewClient(option.WithBaseURL(nodeURL+"/v1/"), option.WithAPIKey(testnode.Token), option.WithMaxRetries(0))
}

func userChat(model, text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:               model,
		Messages:            []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)},
		MaxCompletionTokens: openai.Int(24),
		Seed:                openai.Int(7),
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOpenAIGoSDK drives a node with the official OpenAI Go SDK, over the
// simulator and over the real Ollama.
func TestOpenAIGoSDK(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg target) {
		n := testnode.Start(t, tg.ollamaURL)
		c := sdk(n.URL())
		t.Run("models", func(t *testing.T) { checkModels(t, c, tg) })
		t.Run("chat", func(t *testing.T) { checkChat(t, c, tg) })
		t.Run("chat stream with usage", func(t *testing.T) { checkChatStream(t, c, tg) })
		t.Run("max tokens", func(t *testing.T) { checkMaxTokens(t, c, tg) })
		t.Run("completions", func(t *testing.T) { checkCompletions(t, c, tg) })
		t.Run("embeddings", func(t *testing.T) { checkEmbeddings(t, c, tg) })
		t.Run("errors", func(t *testing.T) { checkErrors(t, c, n.URL(), tg) })
		if tg.tools != "" {
			t.Run("tool calls", func(t *testing.T) { checkToolCalls(t, c, tg) })
		}
		if tg.think != "" {
			t.Run("reasoning", func(t *testing.T) { checkReasoning(t, c, tg) })
		}
		if tg.sim != nil { // the simulator thinks longer for higher efforts
			t.Run("reasoning effort", func(t *testing.T) { checkReasoningEffort(t, c, tg) })
			t.Run("json mode", func(t *testing.T) { checkJSONMode(t, c, tg) })
		}
	})
}

func checkModels(t *testing.T, c openai.Client, tg target) {
	ctx := testCtx(t)
	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range page.Data {
		found = found || strings.HasPrefix(m.ID, tg.chat)
	}
	if !found {
		t.Fatalf("model list %v lacks %s", page.Data, tg.chat)
	}
	m, err := c.Models.Get(ctx, tg.chat)
	if err != nil || m.ID != tg.chat || m.Object != "model" {
		t.Fatalf("get model: %+v, %v", m, err)
	}
}

func checkChat(t *testing.T, c openai.Client, tg target) {
	resp, err := c.Chat.Completions.New(testCtx(t), userChat(tg.chat, "Say hello."))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
		t.Fatalf("no answer: %+v", resp)
	}
	if resp.Usage.PromptTokens <= 0 || resp.Usage.CompletionTokens <= 0 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
		t.Errorf("usage %+v", resp.Usage)
	}
	if fr := resp.Choices[0].FinishReason; fr != "stop" && fr != "length" {
		t.Errorf("finish reason %q", fr)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" {
		t.Errorf("id %q object %q", resp.ID, resp.Object)
	}
}

func checkChatStream(t *testing.T, c openai.Client, tg target) {
	p := userChat(tg.chat, "Count to five.")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(testCtx(t), p)
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for st.Next() {
		acc.AddChunk(st.Current())
		chunks++
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if chunks < 3 || acc.Choices[0].Message.Content == "" {
		t.Fatalf("%d chunks, content %q", chunks, acc.Choices[0].Message.Content)
	}
	if acc.Usage.CompletionTokens <= 0 || acc.Usage.PromptTokens <= 0 {
		t.Errorf("no usage in the stream: %+v", acc.Usage)
	}
}

func checkMaxTokens(t *testing.T, c openai.Client, tg target) {
	p := userChat(tg.chat, "Write a long story about the sea.")
	p.MaxCompletionTokens = openai.Int(3)
	resp, err := c.Chat.Completions.New(testCtx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.CompletionTokens > 3 || resp.Choices[0].FinishReason != "length" {
		t.Errorf("max_completion_tokens=3 gave %d tokens, finish %q", resp.Usage.CompletionTokens, resp.Choices[0].FinishReason)
	}
}

func checkCompletions(t *testing.T, c openai.Client, tg target) {
	ctx := testCtx(t)
	params := openai.CompletionNewParams{
		Model:     openai.CompletionNewParamsModel(tg.chat),
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(16),
	}
	resp, err := c.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Text == "" || resp.Usage.CompletionTokens <= 0 {
		t.Fatalf("completion %+v", resp)
	}
	st := c.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text.WriteString(ch.Text)
		}
	}
	if err := st.Err(); err != nil || text.Len() == 0 {
		t.Fatalf("streamed completion %q, %v", text.String(), err)
	}
}

func checkEmbeddings(t *testing.T, c openai.Client, tg target) {
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		t.Run(string(format), func(t *testing.T) {
			resp, err := c.Embeddings.New(testCtx(t), openai.EmbeddingNewParams{
				Model:          tg.embed,
				Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second text"}},
				EncodingFormat: format,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Data) != 2 {
				t.Fatalf("%d embeddings, want 2", len(resp.Data))
			}
			for i, d := range resp.Data {
				if d.Index != int64(i) || len(d.Embedding) != tg.embedDims {
					t.Errorf("embedding %d: index %d, %d dims, want %d", i, d.Index, len(d.Embedding), tg.embedDims)
				}
			}
		})
	}
}

func checkErrors(t *testing.T, c openai.Client, nodeURL string, tg target) {
	wrong := openai.NewClient(option.WithBaseURL(nodeURL+"/v1/"), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
	_, err := wrong.Chat.Completions.New(testCtx(t), userChat(tg.chat, "hi"))
	var keyErr *openai.Error
	if !errors.As(err, &keyErr) || keyErr.StatusCode != http.StatusUnauthorized || keyErr.Code != "invalid_api_key" ||
		keyErr.Type != "invalid_request_error" || strings.Contains(keyErr.Message, "sk-wrong") {
		t.Errorf("wrong API key: %v", err)
	}
	_, err = c.Chat.Completions.New(testCtx(t), userChat("no-such-model:7b", "hi"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("unknown model: want an API error, got %v", err)
	}
	if apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: status %d code %q", apiErr.StatusCode, apiErr.Code)
	}
	resp, err := testauth.Client.Post(nodeURL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model": "`+tg.chat+`", "messages": [`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request_error"`) {
		t.Errorf("bad JSON: %d %s", resp.StatusCode, body)
	}
}

func weatherTool() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Current weather in a city"),
		Parameters: shared.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required":   []string{"city"},
		},
	})
}

func checkToolCalls(t *testing.T, c openai.Client, tg target) {
	p := userChat(tg.tools, "Use get_weather for Paris.")
	p.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
	resp, err := c.Chat.Completions.New(testCtx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	checkWeatherCall(t, resp.Choices[0].Message.ToolCalls, resp.Choices[0].FinishReason)

	st := c.Chat.Completions.NewStreaming(testCtx(t), p)
	acc := openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	checkWeatherCall(t, acc.Choices[0].Message.ToolCalls, acc.Choices[0].FinishReason)
}

func checkWeatherCall(t *testing.T, calls []openai.ChatCompletionMessageToolCallUnion, finish string) {
	t.Helper()
	if len(calls) != 1 || finish != "tool_calls" {
		t.Fatalf("want one tool call and finish tool_calls, got %d calls, finish %q", len(calls), finish)
	}
	call := calls[0]
	var args map[string]any
	if call.ID == "" || call.Function.Name != "get_weather" || json.Unmarshal([]byte(call.Function.Arguments), &args) != nil || args["city"] == nil {
		t.Errorf("tool call %+v", call)
	}
}

func checkReasoning(t *testing.T, c openai.Client, tg target) {
	p := userChat(tg.think, "Why is the sky blue?")
	p.MaxCompletionTokens = openai.Int(200)
	p.ReasoningEffort = shared.ReasoningEffortLow
	resp, err := c.Chat.Completions.New(testCtx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Choices[0].Message
	var extra struct {
		ReasoningContent string `json:"reasoning_content"`
		Reasoning        string `json:"reasoning"`
	}
	if err := json.Unmarshal([]byte(msg.RawJSON()), &extra); err != nil {
		t.Fatal(err)
	}
	if extra.ReasoningContent == "" || extra.ReasoningContent != extra.Reasoning || msg.Content == "" || strings.Contains(msg.Content, extra.ReasoningContent) {
		t.Errorf("thinking not apart from the answer: content %q, reasoning_content %q, reasoning %q", msg.Content, extra.ReasoningContent, extra.Reasoning)
	}

	st := c.Chat.Completions.NewStreaming(testCtx(t), p)
	var thinking, answer strings.Builder
	for st.Next() {
		for _, ch := range st.Current().Choices {
			var d struct {
				ReasoningContent string `json:"reasoning_content"`
			}
			_ = json.Unmarshal([]byte(ch.Delta.RawJSON()), &d)
			thinking.WriteString(d.ReasoningContent)
			answer.WriteString(ch.Delta.Content)
		}
	}
	if err := st.Err(); err != nil || thinking.Len() == 0 || answer.Len() == 0 {
		t.Errorf("streamed reasoning %q answer %q err %v", thinking.String(), answer.String(), err)
	}
}

func checkJSONMode(t *testing.T, c openai.Client, tg target) {
	p := userChat(tg.chat, "Give me a user as JSON.")
	p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
	p.MaxCompletionTokens = openai.Int(200)
	resp, err := c.Chat.Completions.New(testCtx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(resp.Choices[0].Message.Content), &v); err != nil {
		t.Errorf("json_object answer is not JSON: %q", resp.Choices[0].Message.Content)
	}
}

// checkReasoningEffort checks that reasoning_effort reaches the model: none
// turns thinking off, and high thinks longer than low.
func checkReasoningEffort(t *testing.T, c openai.Client, tg target) {
	thinking := func(effort shared.ReasoningEffort) int {
		p := userChat(tg.think, "Why is the sky blue?")
		p.MaxCompletionTokens = openai.Int(500)
		p.ReasoningEffort = effort
		resp, err := c.Chat.Completions.New(testCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		var extra struct {
			ReasoningContent string `json:"reasoning_content"`
		}
		_ = json.Unmarshal([]byte(resp.Choices[0].Message.RawJSON()), &extra)
		return len(extra.ReasoningContent)
	}
	none, low, high := thinking(shared.ReasoningEffortNone), thinking(shared.ReasoningEffortLow), thinking(shared.ReasoningEffortHigh)
	if none != 0 || low == 0 || high <= low {
		t.Errorf("reasoning length by effort: none %d, low %d, high %d", none, low, high)
	}
}
