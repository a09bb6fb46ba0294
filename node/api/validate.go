package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/openai"
)

// decodeBody decodes a JSON request body into v, naming the offending field
// when a value has the wrong type. The body is checked against the
// server's JSON limits first, so that it is never decoded past them.
func decodeBody(c *fiber.Ctx, v any) error {
	lim := requestInfo(c).limits
	if lim == (jsonLimits{}) {
		lim = DefaultConfig().jsonLimits()
	}
	return decodeJSON(c.Body(), lim, v)
}

// decodeJSON decodes a request body within lim into v.
func decodeJSON(body []byte, lim jsonLimits, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalidParam("", "the request body is empty; send a JSON object")
	}
	if err := checkJSON(body, lim); err != nil {
		return err
	}
	if fastDecode(body, v) {
		return nil
	}
	// Unmarshal reads body in place; a json.Decoder would first copy it
	// into a buffer of its own (one more body's worth per request).
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			switch msg := se.Error(); {
			case strings.Contains(msg, "after top-level value"):
				return invalidParam("", "the request body must hold a single JSON object")
			case strings.Contains(msg, "unexpected end of JSON input"):
				err = io.ErrUnexpectedEOF // as a json.Decoder says it
			}
		}
		return jsonError(err, body, v, false)
	}
	return nil
}

// jsonError is the answer to a body that did not decode into v (strict:
// with unknown fields refused). Errors that name no field (those of the
// custom decoders of Ollama's types, whose texts may spell Go types) are
// answered naming the field found to fail, never with their text.
func jsonError(err error, body []byte, v any, strict bool) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		field := jsonPath(te.Field)
		return invalidParam(field, "invalid type for '%s': expected %s, got %s", field, friendlyType(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalidParam("", "could not parse the JSON body of your request (%s at offset %d)", se.Error(), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return invalidParam("", "could not parse the JSON body of your request: it ends early")
	}
	if first := bytes.TrimSpace(body); len(first) > 0 && first[0] != '{' {
		return invalidParam("", "the request body must be a JSON object")
	}
	field, known := failingField(body, v, strict)
	switch {
	case field == "":
		return invalidParam("", "could not parse the JSON body of your request")
	case !known:
		return invalidParam("", "Unrecognized request argument supplied: %s", cut(field))
	}
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		return invalidParam(field, "invalid value for '%s': it is not valid base64", field)
	}
	return invalidParam(field, "invalid value for '%s'", field)
}

// failingField finds the top-level field of a JSON object body that does
// not decode into a new value of v's type on its own, and whether v has
// such a field; "" when none does alone.
func failingField(body []byte, v any, strict bool) (string, bool) {
	var fields map[string]json.RawMessage
	rt := reflect.TypeOf(v)
	if json.Unmarshal(body, &fields) != nil || rt.Kind() != reflect.Pointer {
		return "", false
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		one, err := json.Marshal(map[string]json.RawMessage{name: fields[name]})
		if err != nil {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(one))
		if strict {
			dec.DisallowUnknownFields()
		}
		if err := dec.Decode(reflect.New(rt.Elem()).Interface()); err != nil {
			return name, !strict || knownField(rt.Elem(), name)
		}
	}
	return "", false
}

// knownField reports whether a JSON object key names a field of struct
// type t (as encoding/json matches keys: case-insensitively, through
// embedded structs).
func knownField(t reflect.Type, key string) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && name == "" && knownField(f.Type, key):
			return true
		case name == "" && f.IsExported():
			name = f.Name
		}
		if strings.EqualFold(name, key) {
			return true
		}
	}
	return false
}

// jsonPath drops the names of embedded Go structs from a decoder's field
// path ("ChatCompletionRequest.temperature" becomes "temperature").
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "" && !unicode.IsUpper(rune(p[0])) {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

// friendlyType says what a Go type holds in JSON's words, never naming
// the Go type.
func friendlyType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return friendlyType(t.Elem())
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	}
	return "another type"
}

func indexed(field string, i int, sub string) string {
	return fmt.Sprintf("%s[%d].%s", field, i, sub)
}

func inRange(name string, v *float64, lo, hi float64) error {
	if v != nil && (*v < lo || *v > hi) {
		return invalidParam(name, "%s must be between %g and %g, got %g", name, lo, hi, *v)
	}
	return nil
}

func checkSampling(temperature, topP, freq, pres *float64) error {
	return errors.Join(
		inRange("temperature", temperature, 0, 2),
		inRange("top_p", topP, 0, 1),
		inRange("frequency_penalty", freq, -2, 2),
		inRange("presence_penalty", pres, -2, 2),
	)
}

func positive(name string, v *int) error {
	if v != nil && *v < 1 {
		return invalidParam(name, "%s must be at least 1, got %d", name, *v)
	}
	return nil
}

// checkStop accepts a string or an array of at most four strings.
func checkStop(stop any) error {
	switch v := stop.(type) {
	case nil, string:
		return nil
	case []any:
		if len(v) > 4 {
			return invalidParam("stop", "stop may hold at most 4 sequences")
		}
		for _, s := range v {
			if _, ok := s.(string); !ok {
				return invalidParam("stop", "stop must be a string or an array of strings")
			}
		}
		return nil
	}
	return invalidParam("stop", "stop must be a string or an array of strings")
}

func checkResponseFormat(f *openai.ResponseFormat) error {
	if f == nil {
		return nil
	}
	switch f.Type {
	case "", "text", "json_object":
		return nil
	case "json_schema":
		if f.JsonSchema == nil || len(f.JsonSchema.Schema) == 0 {
			return invalidParam("response_format.json_schema", "response_format of type json_schema needs json_schema.schema")
		}
		return checkSchema("response_format.json_schema.schema", f.JsonSchema.Schema)
	}
	return invalidParam("response_format.type", "invalid response_format type %q: want text, json_object or json_schema", cut(f.Type))
}
