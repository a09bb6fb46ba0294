package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// The JSON schema of a structured output reaches Ollama, which turns it
// into a grammar and fails the whole request (HTTP 500) on a schema it
// cannot read. checkSchema refuses such a schema first, with a 400 naming
// where it is wrong. It checks the shape of the keywords that describe a
// value (JSON Schema's validation vocabulary), not every rule of the
// specification: unknown keywords are left alone.

// jsonTypes are the names JSON Schema's "type" takes.
var jsonTypes = []string{"string", "number", "integer", "boolean", "object", "array", "null"}

// schemaKeyword says what is wrong with the value of one keyword, or "".
type schemaKeyword func(v any, path string) string

// schemaKeywords check the keywords whose values must have a shape; each
// nested schema is checked in turn.
var schemaKeywords map[string]schemaKeyword

func init() {
	schemaKeywords = map[string]schemaKeyword{
		"type":                 checkTypeKeyword,
		"properties":           schemaMap,
		"patternProperties":    schemaMap,
		"$defs":                schemaMap,
		"definitions":          schemaMap,
		"items":                schemaOrList,
		"prefixItems":          schemaList,
		"anyOf":                schemaList,
		"oneOf":                schemaList,
		"allOf":                schemaList,
		"not":                  subschema,
		"additionalProperties": subschema,
		"additionalItems":      subschema,
		"required":             stringList,
		"enum":                 anyList,
		"$ref":                 isString,
		"pattern":              isString,
		"format":               isString,
		"minimum":              isNumber,
		"maximum":              isNumber,
		"exclusiveMinimum":     isNumber,
		"exclusiveMaximum":     isNumber,
		"minLength":            isCount,
		"maxLength":            isCount,
		"minItems":             isCount,
		"maxItems":             isCount,
		"minProperties":        isCount,
		"maxProperties":        isCount,
	}
}

// checkSchema checks raw, the schema of param, which must be a JSON
// object.
func checkSchema(param string, raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return invalidParam(param, "%s is required", param)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return invalidParam(param, "%s is not valid JSON", param)
	}
	if _, ok := v.(map[string]any); !ok {
		return invalidParam(param, "%s must be a JSON schema object, got %s", param, jsonKind(v))
	}
	if why := subschema(v, ""); why != "" {
		return invalidParam(param, "%s is not a valid JSON schema: %s", param, why)
	}
	return nil
}

// subschema checks a schema: an object or a boolean.
func subschema(v any, path string) string {
	switch s := v.(type) {
	case bool:
		return ""
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(s)) {
			check, ok := schemaKeywords[k]
			if !ok {
				continue
			}
			if why := check(s[k], join(path, k)); why != "" {
				return why
			}
		}
		return ""
	}
	return fmt.Sprintf("%s must be a schema (an object or a boolean), got %s", at(path), jsonKind(v))
}

func checkTypeKeyword(v any, path string) string {
	switch t := v.(type) {
	case string:
		if slices.Contains(jsonTypes, t) {
			return ""
		}
		return fmt.Sprintf("%s: unknown type %q; want one of %s", path, cut(t), strings.Join(jsonTypes, ", "))
	case []any:
		if len(t) == 0 {
			return path + " must not be empty"
		}
		for i, e := range t {
			if why := checkTypeKeyword(e, fmt.Sprintf("%s[%d]", path, i)); why != "" {
				return why
			}
		}
		return ""
	}
	return fmt.Sprintf("%s must be a string or an array of strings, got %s", path, jsonKind(v))
}

func schemaMap(v any, path string) string {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprintf("%s must be an object of schemas, got %s", path, jsonKind(v))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if why := subschema(m[k], join(path, cut(k))); why != "" {
			return why
		}
	}
	return ""
}

func schemaList(v any, path string) string {
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		return fmt.Sprintf("%s must be a non-empty array of schemas, got %s", path, jsonKind(v))
	}
	for i, e := range l {
		if why := subschema(e, fmt.Sprintf("%s[%d]", path, i)); why != "" {
			return why
		}
	}
	return ""
}

func schemaOrList(v any, path string) string {
	if _, ok := v.([]any); ok {
		return schemaList(v, path)
	}
	return subschema(v, path)
}

func stringList(v any, path string) string {
	l, ok := v.([]any)
	if !ok {
		return fmt.Sprintf("%s must be an array of strings, got %s", path, jsonKind(v))
	}
	for i, e := range l {
		if _, ok := e.(string); !ok {
			return fmt.Sprintf("%s[%d] must be a string, got %s", path, i, jsonKind(e))
		}
	}
	return ""
}

func anyList(v any, path string) string {
	if l, ok := v.([]any); !ok || len(l) == 0 {
		return fmt.Sprintf("%s must be a non-empty array, got %s", path, jsonKind(v))
	}
	return ""
}

func isString(v any, path string) string {
	if _, ok := v.(string); !ok {
		return fmt.Sprintf("%s must be a string, got %s", path, jsonKind(v))
	}
	return ""
}

func isNumber(v any, path string) string {
	if _, ok := v.(float64); !ok {
		return fmt.Sprintf("%s must be a number, got %s", path, jsonKind(v))
	}
	return ""
}

func isCount(v any, path string) string {
	if n, ok := v.(float64); !ok || n < 0 || n != math.Trunc(n) {
		return fmt.Sprintf("%s must be a non-negative integer", path)
	}
	return ""
}

// jsonKind names the JSON kind of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func at(path string) string {
	if path == "" {
		return "the schema"
	}
	return path
}
