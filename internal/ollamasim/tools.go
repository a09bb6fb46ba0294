package ollamasim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ollama/ollama/api"
)

// triggeredTools returns the tools the model calls: those whose name the
// last message mentions, provided that message comes from the user. A
// mention is the name, case-insensitively, or the name with its "_" and "-"
// read as spaces ("get_weather" matches "Get weather in Paris"). After a
// tool result (role "tool") the model answers with text, so agent loops end.
func triggeredTools(tools api.Tools, msgs []api.Message) []api.Tool {
	if len(tools) == 0 || len(msgs) == 0 || msgs[len(msgs)-1].Role != "user" {
		return nil
	}
	text := strings.ToLower(msgs[len(msgs)-1].Content)
	var out []api.Tool
	for _, t := range tools {
		name := strings.ToLower(t.Function.Name)
		if name == "" {
			continue
		}
		spaced := strings.NewReplacer("_", " ", "-", " ").Replace(name)
		if strings.Contains(text, name) || strings.Contains(text, spaced) {
			out = append(out, t)
		}
	}
	return out
}

// toolCalls builds one call per tool, with every schema property filled
// with a deterministic value of its type.
func toolCalls(tools []api.Tool, seed uint64) []api.ToolCall {
	calls := make([]api.ToolCall, len(tools))
	for i, t := range tools {
		r := &rng{s: chainHash(seed, t.Function.Name)}
		args := api.NewToolCallFunctionArguments()
		for name, prop := range t.Function.Parameters.Properties.All() {
			args.Set(name, fillValue(prop, r, 0))
		}
		calls[i] = api.ToolCall{
			ID:       fmt.Sprintf("call_%08x", uint32(r.next())),
			Function: api.ToolCallFunction{Index: i, Name: t.Function.Name, Arguments: args},
		}
	}
	return calls
}

// field is one member of an orderedObject.
type field struct {
	key string
	val any
}

// orderedObject is a JSON object that keeps its members' order.
type orderedObject []field

// MarshalJSON writes the members in order.
func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		v, err := json.Marshal(f.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// maxDepth bounds the nesting of generated values.
const maxDepth = 4

// fillValue is a deterministic value matching a JSON schema property.
func fillValue(p api.ToolProperty, r *rng, depth int) any {
	if len(p.AnyOf) > 0 {
		return fillValue(p.AnyOf[0], r, depth)
	}
	if len(p.Enum) > 0 {
		return p.Enum[r.intn(len(p.Enum))]
	}
	typ := schemaType(p.Type)
	if len(p.Type) == 0 && p.Properties != nil {
		typ = "object"
	}
	switch typ {
	case "integer":
		return 1 + r.intn(100)
	case "number":
		return float64(r.intn(10000)) / 100
	case "boolean":
		return r.intn(2) == 0
	case "null":
		return nil
	case "array":
		if depth >= maxDepth {
			return []any{}
		}
		return []any{fillValue(asProperty(p.Items), r, depth+1)}
	case "object":
		if depth >= maxDepth {
			return orderedObject{}
		}
		return fillObject(p.Properties, r, depth+1)
	default:
		return phrase(r, 2)
	}
}

func fillObject(props *api.ToolPropertiesMap, r *rng, depth int) orderedObject {
	obj := orderedObject{}
	for name, prop := range props.All() {
		obj = append(obj, field{name, fillValue(prop, r, depth)})
	}
	return obj
}

// schemaType is the first non-null type of a property ("string" if none).
func schemaType(types api.PropertyType) string {
	for _, t := range types {
		if t != "null" {
			return t
		}
	}
	if len(types) > 0 {
		return "null"
	}
	return "string"
}

// asProperty reads an untyped schema (such as "items") as a property.
func asProperty(v any) api.ToolProperty {
	var p api.ToolProperty
	if b, err := json.Marshal(v); err == nil {
		_ = json.Unmarshal(b, &p)
	}
	return p
}

// formatKind is what a request's "format" asks for.
type formatKind int

const (
	formatNone formatKind = iota
	formatJSON
	formatSchema
)

// parseFormat validates "format" as Ollama's runner does.
func parseFormat(raw json.RawMessage) (formatKind, api.ToolProperty, error) {
	var schema api.ToolProperty
	s := strings.TrimSpace(string(raw))
	switch s {
	case "", "null", `""`:
		return formatNone, schema, nil
	case `"json"`:
		return formatJSON, schema, nil
	}
	if s[0] != '{' {
		return formatNone, schema, fmt.Errorf("invalid format: %q; expected \"json\" or a valid JSON Schema object", s)
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		return formatNone, schema, fmt.Errorf("invalid JSON schema in format")
	}
	return formatSchema, schema, nil
}

// formatted is the answer text for a format request: a JSON object built
// from the schema, or {"answer": ...} for plain "json".
func formatted(kind formatKind, schema api.ToolProperty, r *rng, words []string) string {
	var v any
	if kind == formatSchema {
		v = fillValue(schema, r, 0)
	} else {
		v = orderedObject{{"answer", strings.TrimSpace(strings.Join(words, ""))}}
	}
	b, _ := json.Marshal(v)
	return string(b)
}
