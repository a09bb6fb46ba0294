package ollamarig

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"
	"github.com/ollama/ollama/thinking"
)

// TestTemplate checks, without a server, that Template parses the way the
// Ollama server parses it, exposes tools and thinking, and renders a
// conversation as intended.
func TestTemplate(t *testing.T) {
	tmpl, err := template.Parse(Template)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := tmpl.Vars()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"messages", "tools", "system", "prompt", "response"} {
		if !slices.Contains(vars, v) {
			t.Errorf("template vars %v lack %q", vars, v)
		}
	}
	if open, closing := thinking.InferTags(tmpl.Template); open != "<think>" || closing != "</think>" {
		t.Errorf("thinking tags = %q %q, want <think> </think>", open, closing)
	}

	var tool api.Tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}`), &tool); err != nil {
		t.Fatal(err)
	}
	var call api.ToolCall
	if err := json.Unmarshal([]byte(`{"function":{"name":"f","arguments":{"x":1}}}`), &call); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, template.Values{
		Messages: []api.Message{
			{Role: "system", Content: "be brief"},
			{Role: "user", Content: "hi"},
			{Role: "assistant", Content: "yo", Thinking: "hmm", ToolCalls: []api.ToolCall{call}},
			{Role: "tool", Content: "42"},
			{Role: "user", Content: "and?"},
		},
		Tools: api.Tools{tool},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|system|>be brief\n" +
		"<|tools|>{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}\n" +
		"<|user|>hi\n" +
		"<|assistant|><think>hmm</think>yo<tool_call>{\"name\": \"f\", \"arguments\": {\"x\":1}}</tool_call>\n" +
		"<|tool|>42\n" +
		"<|user|>and?\n" +
		"<|assistant|>"
	if b.String() != want {
		t.Errorf("rendered:\n%q\nwant:\n%q", b.String(), want)
	}
}
