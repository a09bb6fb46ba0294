package api

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/ollama/ollama/api"
)

// Checks of request parameters that Ollama's translators pass over in
// silence or that Ollama would fail on, so that a client learns which
// parameter is wrong, as the upstream APIs say.

// isNull reports whether a raw value is absent or null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// checkLogitBias accepts a map from token ids to biases between -100 and
// 100, as OpenAI does. Ollama has no logit bias: a valid one is ignored.
func checkLogitBias(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalidParam("logit_bias", "logit_bias must be an object mapping token ids to numbers between -100 and 100")
	}
	for _, v := range m {
		if n, ok := v.(float64); !ok || n < -100 || n > 100 {
			return invalidParam("logit_bias", "logit_bias values must be numbers between -100 and 100")
		}
	}
	return nil
}

// checkTools accepts function tools with a name and, when given,
// parameters that are a JSON schema.
func checkTools(tools []api.Tool) error {
	for i, t := range tools {
		if t.Type != "function" {
			return invalidParam(indexed("tools", i, "type"), "invalid tool type %q: only \"function\" tools are supported", cut(t.Type))
		}
		if t.Function.Name == "" {
			return invalidParam(indexed("tools", i, "function"), "tools[%d].function is required: an object with the function's name", i)
		}
	}
	return nil
}

// toolChoice is the object form of tool_choice.
type toolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// checkToolChoice accepts "none", "auto", "required" or a function of
// tools. Ollama has no tool choice: the model decides.
func checkToolChoice(raw json.RawMessage, tools []api.Tool) error {
	if isNull(raw) {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if !slices.Contains([]string{"none", "auto", "required"}, s) {
			return invalidParam("tool_choice", "invalid tool_choice %q: want none, auto, required or an object naming a function", cut(s))
		}
		return nil
	}
	var c toolChoice
	if err := json.Unmarshal(raw, &c); err != nil || c.Type != "function" || c.Function.Name == "" {
		return invalidParam("tool_choice", `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	if !slices.ContainsFunc(tools, func(t api.Tool) bool { return t.Function.Name == c.Function.Name }) {
		return invalidParam("tool_choice", "tool_choice names the function %q, which is not in tools", cut(c.Function.Name))
	}
	return nil
}

// contextLimiter is a backend that knows the context its replicas are
// sized for (*router.Router).
type contextLimiter interface {
	ContextLength() int
}

// tokenLimit is the most tokens a request may ask to generate: the
// context replicas are sized for, 0 when unknown.
func (s *Server) tokenLimit() int {
	if cl, ok := s.be.(contextLimiter); ok {
		return cl.ContextLength()
	}
	return 0
}

// withinLimit refuses a token count that no replica can generate, which
// Ollama would otherwise take as "until the context is full" or beyond.
func withinLimit(name string, v *int, limit int) error {
	if v == nil || limit <= 0 || *v <= limit {
		return nil
	}
	return invalidParam(name, "%s is too large: %d. The models of this cluster are served with a context of %d tokens, prompt included; ask for at most %d",
		name, *v, limit, limit)
}

// tokenParam is a parameter that counts tokens to generate.
type tokenParam struct {
	name string
	v    *int
}

// checkTokens checks token counts: each at least 1 and at most limit.
func checkTokens(limit int, params ...tokenParam) error {
	for _, p := range params {
		if err := positive(p.name, p.v); err != nil {
			return err
		}
		if err := withinLimit(p.name, p.v, limit); err != nil {
			return err
		}
	}
	return nil
}
