package ollamasim_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/ollamasim"
)

func TestChatStreaming(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	tests := []struct {
		name       string
		stream     *bool
		wantChunks bool // several messages before the final one
	}{
		{name: "default streams", stream: nil, wantChunks: true},
		{name: "stream true", stream: boolPtr(true), wantChunks: true},
		{name: "stream false", stream: boolPtr(false), wantChunks: false},
	}
	var first string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &api.ChatRequest{Model: chatModel, Messages: userMsg("Tell me about rivers."), Stream: tc.stream}
			resps, err := chat(testCtx(t), c, req)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(resps) > 1; got != tc.wantChunks {
				t.Fatalf("got %d messages, want several: %v", len(resps), tc.wantChunks)
			}
			final := resps[len(resps)-1]
			if !final.Done || final.DoneReason != "stop" {
				t.Errorf("final: done=%v reason=%q, want done with stop", final.Done, final.DoneReason)
			}
			for _, r := range resps[:len(resps)-1] {
				if r.Done || r.Message.Role != "assistant" || r.Model != chatModel {
					t.Errorf("chunk %+v: want assistant chunk of %s, not done", r, chatModel)
				}
			}
			m := final.Metrics
			if m.PromptEvalCount <= 0 || m.EvalCount <= 0 || m.TotalDuration <= 0 || m.EvalDuration <= 0 || m.PromptEvalDuration <= 0 {
				t.Errorf("metrics incomplete: %+v", m)
			}
			if tc.wantChunks && m.EvalCount != len(resps)-1 {
				t.Errorf("eval_count %d, want one token per chunk (%d)", m.EvalCount, len(resps)-1)
			}
			var text strings.Builder
			for _, r := range resps {
				text.WriteString(r.Message.Content)
			}
			if text.Len() == 0 {
				t.Fatal("empty answer")
			}
			if first == "" {
				first = text.String()
			} else if text.String() != first {
				t.Errorf("answer %q differs from the streamed one %q", text.String(), first)
			}
		})
	}
}

func TestContentTypes(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	tests := []struct {
		name, path, body, wantType string
	}{
		{"chat streamed", "/api/chat", `{"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}]}`, "application/x-ndjson"},
		{"chat single", "/api/chat", `{"model":"llama3.2:1b","stream":false,"messages":[{"role":"user","content":"hi"}]}`, "application/json"},
		{"generate streamed", "/api/generate", `{"model":"llama3.2:1b","prompt":"hi"}`, "application/x-ndjson"},
		{"pull streamed", "/api/pull", `{"model":"qwen3:0.6b"}`, "application/x-ndjson"},
		{"error", "/api/chat", `{"model":"nope"}`, "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ct, body := rawPost(t, s, tc.path, tc.body)
			if !strings.HasPrefix(ct, tc.wantType) {
				t.Errorf("Content-Type %q, want %q", ct, tc.wantType)
			}
			if tc.wantType == "application/x-ndjson" {
				for i, line := range strings.Split(strings.TrimSpace(body), "\n") {
					if !json.Valid([]byte(line)) {
						t.Fatalf("line %d is not JSON: %q", i, line)
					}
				}
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	base := func() *api.ChatRequest {
		return &api.ChatRequest{Model: chatModel, Messages: userMsg("What is a cluster?"), Stream: boolPtr(false)}
	}
	answer := func(req *api.ChatRequest) string {
		content, _, _ := mustChat(t, c, req)
		return content
	}
	ref := answer(base())
	tests := []struct {
		name   string
		mutate func(*api.ChatRequest)
		same   bool
	}{
		{"same request", func(*api.ChatRequest) {}, true},
		{"streamed", func(r *api.ChatRequest) { r.Stream = nil }, true},
		{"temperature ignored", func(r *api.ChatRequest) { r.Options = map[string]any{"temperature": 0.1} }, true},
		{"other seed", func(r *api.ChatRequest) { r.Options = map[string]any{"seed": 42} }, false},
		{"other message", func(r *api.ChatRequest) { r.Messages = userMsg("What is a node?") }, false},
		{"other model", func(r *api.ChatRequest) { r.Model = "deepseek-r1:1.5b"; r.Think = &api.ThinkValue{Value: false} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := base()
			tc.mutate(req)
			if got := answer(req); (got == ref) != tc.same {
				t.Errorf("answer %q vs reference %q: want same=%v", got, ref, tc.same)
			}
		})
	}
}

func TestNumPredictAndStop(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{ResponseTokens: 30})
	c := s.Client()
	msgs := userMsg("Describe a mountain.")
	full, _, _ := mustChat(t, c, &api.ChatRequest{Model: chatModel, Messages: msgs})
	words := strings.Fields(full)
	stopWord := words[5]
	tests := []struct {
		name        string
		options     map[string]any
		wantContent string
		wantReason  string
		wantEval    int
	}{
		{"natural end", nil, full, "stop", 30},
		{"num_predict cuts", map[string]any{"num_predict": 5}, strings.Join(words[:5], " "), "length", 5},
		{"num_predict above length", map[string]any{"num_predict": 100}, full, "stop", 30},
		{"stop sequence", map[string]any{"stop": []string{stopWord}}, full[:strings.Index(full, stopWord)], "stop", -1},
		{"stop that never occurs", map[string]any{"stop": []string{"<|never|>"}}, full, "stop", 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content, _, final := mustChat(t, c, &api.ChatRequest{Model: chatModel, Messages: msgs, Options: tc.options})
			if content != tc.wantContent {
				t.Errorf("content %q, want %q", content, tc.wantContent)
			}
			if final.DoneReason != tc.wantReason {
				t.Errorf("done_reason %q, want %q", final.DoneReason, tc.wantReason)
			}
			if tc.wantEval >= 0 && final.EvalCount != tc.wantEval {
				t.Errorf("eval_count %d, want %d", final.EvalCount, tc.wantEval)
			}
		})
	}
}

func weatherTool() api.Tool {
	props := api.NewToolPropertiesMap()
	props.Set("location", api.ToolProperty{Type: api.PropertyType{"string"}})
	props.Set("days", api.ToolProperty{Type: api.PropertyType{"integer"}})
	props.Set("unit", api.ToolProperty{Type: api.PropertyType{"string"}, Enum: []any{"celsius", "fahrenheit"}})
	props.Set("hourly", api.ToolProperty{Type: api.PropertyType{"boolean"}})
	props.Set("fields", api.ToolProperty{Type: api.PropertyType{"array"}, Items: map[string]any{"type": "string"}})
	return api.Tool{Type: "function", Function: api.ToolFunction{
		Name: "get_weather", Description: "Weather forecast",
		Parameters: api.ToolFunctionParameters{Type: "object", Required: []string{"location"}, Properties: props},
	}}
}

func TestToolCalls(t *testing.T) {
	noTools := ollamasim.ModelConfig{Name: "plain:1b", NoTools: true}
	s := ollamasim.StartTest(t, ollamasim.Config{Models: append(ollamasim.DefaultModels(), noTools)})
	c := s.Client()
	tools := api.Tools{weatherTool()}
	tests := []struct {
		name     string
		model    string
		msgs     []api.Message
		stream   *bool
		wantCall bool
		wantErr  int
	}{
		{name: "name mentioned, streamed", model: chatModel, msgs: userMsg("Call get_weather for Paris"), wantCall: true},
		{name: "spaced name, not streamed", model: chatModel, msgs: userMsg("Get weather in Paris"), stream: boolPtr(false), wantCall: true},
		{name: "not mentioned", model: chatModel, msgs: userMsg("Hello there")},
		{name: "after tool result", model: chatModel, msgs: []api.Message{
			{Role: "user", Content: "get_weather please"}, {Role: "tool", Content: "sunny"},
		}},
		{name: "model without tools", model: "plain:1b", msgs: userMsg("get_weather"), wantErr: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resps, err := chat(testCtx(t), c, &api.ChatRequest{Model: tc.model, Messages: tc.msgs, Tools: tools, Stream: tc.stream})
			if tc.wantErr != 0 {
				if statusOf(err) != tc.wantErr || !strings.Contains(errorText(err), "does not support tools") {
					t.Fatalf("err %v, want %d does not support tools", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var calls []api.ToolCall
			var content string
			for i, r := range resps {
				// Streamed, the call comes in one chunk right before the
				// final message; otherwise in the only message.
				want := len(resps) - 2
				if !streamed(tc.stream) {
					want = 0
				}
				if len(r.Message.ToolCalls) > 0 && i != want {
					t.Errorf("tool call in message %d of %d", i, len(resps))
				}
				calls = append(calls, r.Message.ToolCalls...)
				content += r.Message.Content
			}
			if !tc.wantCall {
				if len(calls) != 0 || content == "" {
					t.Fatalf("got calls %v and content %q, want text only", calls, content)
				}
				return
			}
			if len(calls) != 1 || content != "" {
				t.Fatalf("got calls %v and content %q, want one call and no text", calls, content)
			}
			checkWeatherArgs(t, calls[0])
		})
	}
}

func streamed(flag *bool) bool { return flag == nil || *flag }

func checkWeatherArgs(t *testing.T, call api.ToolCall) {
	t.Helper()
	if call.Function.Name != "get_weather" || call.ID == "" {
		t.Fatalf("call %+v, want get_weather with an id", call)
	}
	args := call.Function.Arguments.ToMap()
	if loc, ok := args["location"].(string); !ok || loc == "" {
		t.Errorf("location %v, want a string", args["location"])
	}
	if d, ok := args["days"].(float64); !ok || d != float64(int(d)) {
		t.Errorf("days %v, want an integer", args["days"])
	}
	if u := args["unit"]; u != "celsius" && u != "fahrenheit" {
		t.Errorf("unit %v, want an enum value", u)
	}
	if _, ok := args["hourly"].(bool); !ok {
		t.Errorf("hourly %v, want a boolean", args["hourly"])
	}
	if f, ok := args["fields"].([]any); !ok || len(f) == 0 {
		t.Errorf("fields %v, want a non-empty array", args["fields"])
	}
}

func TestThinking(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{ThinkingTokens: 20})
	c := s.Client()
	tests := []struct {
		name         string
		model        string
		think        *api.ThinkValue
		wantThinking int // expected thinking words; -1 means any positive
		wantErr      string
	}{
		{name: "unset thinks", model: thinkModel, wantThinking: 20},
		{name: "true thinks", model: thinkModel, think: &api.ThinkValue{Value: true}, wantThinking: 20},
		{name: "low thinks less", model: thinkModel, think: &api.ThinkValue{Value: "low"}, wantThinking: 10},
		{name: "high thinks more", model: thinkModel, think: &api.ThinkValue{Value: "high"}, wantThinking: 40},
		{name: "false does not think", model: thinkModel, think: &api.ThinkValue{Value: false}},
		{name: "plain model, unset", model: chatModel},
		{name: "plain model, false", model: chatModel, think: &api.ThinkValue{Value: false}},
		{name: "plain model, true", model: chatModel, think: &api.ThinkValue{Value: true}, wantErr: `"llama3.2:1b" does not support thinking`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &api.ChatRequest{Model: tc.model, Messages: userMsg("Why is the sky blue?"), Think: tc.think}
			resps, err := chat(testCtx(t), c, req)
			if tc.wantErr != "" {
				if statusOf(err) != 400 || errorText(err) != tc.wantErr {
					t.Fatalf("err %v, want 400 %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var thinking, content string
			for _, r := range resps {
				if r.Message.Thinking != "" && content != "" {
					t.Fatal("thinking after content")
				}
				thinking += r.Message.Thinking
				content += r.Message.Content
			}
			if got := len(strings.Fields(thinking)); got != tc.wantThinking {
				t.Errorf("%d thinking words, want %d", got, tc.wantThinking)
			}
			if content == "" {
				t.Error("no content")
			}
		})
	}
}

func TestFormat(t *testing.T) {
	s := ollamasim.StartTest(t, ollamasim.Config{})
	c := s.Client()
	schema := `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},` +
		`"tags":{"type":"array","items":{"type":"string"}},"address":{"type":"object","properties":{"city":{"type":"string"}}}},` +
		`"required":["name","age","tags","address"]}`
	tests := []struct {
		name     string
		format   string
		wantKeys []string
		wantErr  int
	}{
		{name: "json", format: `"json"`, wantKeys: []string{"answer"}},
		{name: "schema", format: schema, wantKeys: []string{"name", "age", "tags", "address"}},
		{name: "invalid", format: `"xml"`, wantErr: 500},
	}
	for _, tc := range tests {
		for _, stream := range []bool{true, false} {
			t.Run(tc.name, func(t *testing.T) {
				req := &api.ChatRequest{Model: chatModel, Messages: userMsg("Give me a person"), Format: json.RawMessage(tc.format), Stream: &stream}
				resps, err := chat(testCtx(t), c, req)
				if tc.wantErr != 0 {
					if statusOf(err) != tc.wantErr || !strings.Contains(errorText(err), "invalid format") {
						t.Fatalf("err %v, want %d invalid format", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var content string
				for _, r := range resps {
					content += r.Message.Content
				}
				var obj map[string]any
				if err := json.Unmarshal([]byte(content), &obj); err != nil {
					t.Fatalf("content %q is not a JSON object: %v", content, err)
				}
				for _, k := range tc.wantKeys {
					if _, ok := obj[k]; !ok {
						t.Errorf("key %q missing from %s", k, content)
					}
				}
				if tc.name == "schema" {
					checkPerson(t, obj)
				}
			})
		}
	}
}

func checkPerson(t *testing.T, obj map[string]any) {
	t.Helper()
	if _, ok := obj["name"].(string); !ok {
		t.Errorf("name %v, want a string", obj["name"])
	}
	if age, ok := obj["age"].(float64); !ok || age != float64(int(age)) {
		t.Errorf("age %v, want an integer", obj["age"])
	}
	if tags, ok := obj["tags"].([]any); !ok || len(tags) == 0 {
		t.Errorf("tags %v, want a non-empty array", obj["tags"])
	}
	if addr, ok := obj["address"].(map[string]any); !ok || addr["city"] == nil {
		t.Errorf("address %v, want an object with a city", obj["address"])
	}
}
