package api

import (
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// Most /v1/chat/completions requests are plain: messages of a system,
// user or assistant role with a text, and a few sampling numbers.
// openai.FromChatRequest translates them with growing appends, a copy of
// the whole request and a map grown key by key; plainChat builds the same
// api.ChatRequest directly, every slice and the map at their final size.
// It takes only requests whose translation is a copy of fields; anything
// else (content parts, tool calls, tool messages, tools, a response
// format, a reasoning effort, log probabilities) is left to
// FromChatRequest. FuzzPlainChatConversion holds the two to the same
// value, down to nil against empty slices and the Go types of the
// options (an int num_predict and seed, float64 sampling numbers).

// plainChat translates r as openai.FromChatRequest does, or reports false
// when r is not plain. The result's Stream points at r.Stream.
func plainChat(r *openai.ChatCompletionRequest) (*api.ChatRequest, bool) {
	if len(r.Messages) == 0 || r.ResponseFormat != nil || len(r.Tools) > 0 || r.Reasoning != nil ||
		r.ReasoningEffort != nil || r.Logprobs != nil || r.TopLogprobs != 0 || r.DebugRenderOnly {
		return nil, false
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if _, ok := m.Content.(string); !ok || len(m.ToolCalls) > 0 || !plainRole(m.Role) {
			return nil, false
		}
	}
	msgs := make([]api.Message, len(r.Messages))
	for i := range r.Messages {
		m := &r.Messages[i]
		// FromChatRequest gives every text message the tool calls
		// FromCompletionToolCall makes of none: an empty, non-nil slice
		// (which allocates nothing).
		msgs[i] = api.Message{Role: m.Role, Content: m.Content.(string), Thinking: m.Reasoning,
			ToolCalls: []api.ToolCall{}, ToolCallID: m.ToolCallID}
	}
	return &api.ChatRequest{
		Model:    r.Model,
		Messages: msgs,
		Options:  plainOptions(r),
		Stream:   &r.Stream,
		Tools:    r.Tools, // none, but an empty list stays empty rather than nil
	}, true
}

// plainRole reports whether a message of role is translated as a text
// message with no tool name (FromChatRequest looks one up for a role of
// "tool" in any case).
func plainRole(role string) bool {
	return role == "system" || role == "user" || role == "assistant"
}

// plainOptions are FromChatRequest's options for r: the stop sequences,
// num_predict and seed as ints, the sampling numbers as float64, with
// temperature and top_p at 1 when not given.
func plainOptions(r *openai.ChatCompletionRequest) map[string]any {
	n := 2 // temperature and top_p, always there
	for _, set := range [...]bool{r.Stop != nil, r.MaxTokens != nil, r.Seed != nil, r.FrequencyPenalty != nil, r.PresencePenalty != nil} {
		if set {
			n++
		}
	}
	opts := make(map[string]any, n)
	switch stop := r.Stop.(type) {
	case string:
		opts["stop"] = []string{stop}
	case []any:
		var stops []string // nil when no sequence is a string, as there
		for _, s := range stop {
			if str, ok := s.(string); ok {
				if stops == nil {
					stops = make([]string, 0, len(stop))
				}
				stops = append(stops, str)
			}
		}
		opts["stop"] = stops
	}
	if r.MaxTokens != nil {
		opts["num_predict"] = *r.MaxTokens
	}
	if r.Temperature != nil {
		opts["temperature"] = *r.Temperature
	} else {
		opts["temperature"] = 1.0 // a constant: boxed without allocating
	}
	if r.Seed != nil {
		opts["seed"] = *r.Seed
	}
	if r.FrequencyPenalty != nil {
		opts["frequency_penalty"] = *r.FrequencyPenalty
	}
	if r.PresencePenalty != nil {
		opts["presence_penalty"] = *r.PresencePenalty
	}
	if r.TopP != nil {
		opts["top_p"] = *r.TopP
	} else {
		opts["top_p"] = 1.0
	}
	return opts
}
