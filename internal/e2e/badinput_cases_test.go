package e2e

import (
	"strconv"
	"strings"
)

// The cases of TestBadInput, by route family.

const (
	model = `"model":"llama3.2:1b"`
	hi    = `"messages":[{"role":"user","content":"hi"}]`
)

// obj is a JSON object of the given members.
func obj(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

// chat is a chat completion request with extra members.
func chat(extra ...string) string { return obj(append([]string{model, hi}, extra...)...) }

// anth is an Anthropic messages request with extra members.
func anth(extra ...string) string {
	return obj(append([]string{model, `"max_tokens":8`, hi}, extra...)...)
}

// native is an Ollama chat request with extra members.
func native(extra ...string) string {
	return obj(append([]string{model, `"stream":false`, hi}, extra...)...)
}

func badInputCases(e badEnv) []badCase {
	var cases []badCase
	for _, part := range [][]badCase{openAICases(), completionCases(), responsesCases(), anthropicCases(), ollamaCases(),
		adminCases(e), credentialCases(), rawCases(e)} {
		cases = append(cases, part...)
	}
	return cases
}

var (
	longName   = strings.Repeat("m", 300)
	deep       = nested(100)
	manyValues = "[" + fmtCount(badMaxValues+1, "0") + "]"
	huge       = strings.Repeat("h", 20000)
	tooBig     = strings.Repeat("x", badBodyLimit+1)
	tooMany    = "[" + fmtCount(4097, `{"role":"user","content":"x"}`) + "]"
)

func openAICases() []badCase {
	const p = "/v1/chat/completions"
	return []badCase{
		{name: "chat/empty body", path: p, method: "POST", want: bad("").with("empty")},
		{name: "chat/blank body", path: p, body: " \n\t ", want: bad("").with("empty")},
		{name: "chat/truncated JSON", path: p, body: `{"model":"llama3.2:1b","messages":[`, want: bad("").with("ends early")},
		{name: "chat/array body", path: p, body: `[1,2]`, want: bad("").with("JSON object")},
		{name: "chat/string body", path: p, body: `"hello"`, want: bad("").with("JSON object")},
		{name: "chat/two objects", path: p, body: chat() + chat(), want: bad("").with("single JSON object")},
		{name: "chat/trailing garbage", path: p, body: chat() + "garbage", want: bad("").with("single JSON object")},
		{name: "chat/single quotes", path: p, body: `{'model':'x'}`, want: bad("").with("could not parse")},
		{name: "chat/NaN temperature", path: p, body: chat(`"temperature":NaN`), want: bad("").with("could not parse")},
		{name: "chat/model is a number", path: p, body: obj(`"model":5`, hi), want: bad("model")},
		{name: "chat/messages is a string", path: p, body: obj(model, `"messages":"hi"`), want: bad("messages")},
		{name: "chat/messages empty", path: p, body: obj(model, `"messages":[]`), want: bad("messages")},
		{name: "chat/message is null", path: p, body: obj(model, `"messages":[null]`), want: bad("messages[0].role")},
		{name: "chat/unknown role", path: p, body: obj(model, `"messages":[{"role":"hacker","content":"x"}]`), want: bad("messages[0].role")},
		{name: "chat/content is an object", path: p, body: obj(model, `"messages":[{"role":"user","content":{"a":1}}]`), want: bad("messages[0].content")},
		{name: "chat/content part of an unknown type", path: p, body: obj(model, `"messages":[{"role":"user","content":[{"type":"evil"}]}]`), want: bad("messages")},
		{name: "chat/image URL fetch", path: p, body: obj(model, `"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://169.254.169.254/"}}]}]`), want: bad("messages")},
		{name: "chat/temperature 1e308", path: p, body: chat(`"temperature":1e308`), want: bad("temperature")},
		{name: "chat/temperature 1e999", path: p, body: chat(`"temperature":1e999`), want: bad("temperature")},
		{name: "chat/temperature negative", path: p, body: chat(`"temperature":-1`), want: bad("temperature")},
		{name: "chat/temperature is a string", path: p, body: chat(`"temperature":"hot"`), want: bad("temperature")},
		{name: "chat/top_p 2", path: p, body: chat(`"top_p":2`), want: bad("top_p")},
		{name: "chat/frequency_penalty -1e308", path: p, body: chat(`"frequency_penalty":-1e308`), want: bad("frequency_penalty")},
		{name: "chat/max_tokens negative", path: p, body: chat(`"max_tokens":-1`), want: bad("max_tokens")},
		{name: "chat/max_tokens zero", path: p, body: chat(`"max_tokens":0`), want: bad("max_tokens")},
		{name: "chat/max_tokens a billion", path: p, body: chat(`"max_tokens":1000000000`), want: bad("max_tokens")},
		{name: "chat/max_tokens 1e9", path: p, body: chat(`"max_tokens":1e9`), want: bad("max_tokens")},
		{name: "chat/max_tokens past int64", path: p, body: chat(`"max_tokens":99999999999999999999`), want: bad("max_tokens")},
		{name: "chat/max_completion_tokens negative", path: p, body: chat(`"max_completion_tokens":-5`), want: bad("max_completion_tokens")},
		{name: "chat/n 1e9", path: p, body: chat(`"n":1000000000`), want: bad("n")},
		{name: "chat/n negative", path: p, body: chat(`"n":-1`), want: bad("n")},
		{name: "chat/top_logprobs 99", path: p, body: chat(`"top_logprobs":99`), want: bad("top_logprobs")},
		{name: "chat/stop of five", path: p, body: chat(`"stop":["a","b","c","d","e"]`), want: bad("stop")},
		{name: "chat/stop of numbers", path: p, body: chat(`"stop":[1]`), want: bad("stop")},
		{name: "chat/seed is a string", path: p, body: chat(`"seed":"x"`), want: bad("seed")},
		{name: "chat/stream is a string", path: p, body: chat(`"stream":"yes"`), want: bad("stream")},
		{name: "chat/tool of another type", path: p, body: chat(`"tools":[{"type":"shell"}]`), want: bad("tools[0].type")},
		{name: "chat/tool_choice unknown", path: p, body: chat(`"tool_choice":"sometimes"`), want: bad("tool_choice")},
		{name: "chat/logit_bias 1000", path: p, body: chat(`"logit_bias":{"1":1000}`), want: bad("logit_bias")},
		{name: "chat/response_format xml", path: p, body: chat(`"response_format":{"type":"xml"}`), want: bad("response_format.type")},
		{name: "chat/json_schema not an object", path: p, body: chat(`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":5}}`), want: bad("response_format.json_schema.schema")},
		{name: "chat/reasoning_effort unknown", path: p, body: chat(`"reasoning_effort":"maximum"`), want: bad("reasoning_effort")},
		{name: "chat/nested 100 deep", path: p, body: chat(`"x":` + deep), want: limited("")},
		{name: "chat/too many values", path: p, body: chat(`"x":` + manyValues), want: limited("")},
		{name: "chat/role of 20000 bytes", path: p, body: obj(model, `"messages":[{"role":"`+huge+`","content":"x"}]`), want: bad("messages[0].role")},
		{name: "chat/reasoning_effort of 20000 bytes", path: p, body: chat(`"reasoning_effort":"` + huge + `"`), want: bad("reasoning_effort")},
		{name: "chat/response_format type of 20000 bytes", path: p, body: chat(`"response_format":{"type":"` + huge + `"}`), want: bad("response_format.type")},
		{name: "chat/schema property of 20000 bytes", path: p, body: chat(`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"` + huge + `":5}}}}`), want: bad("response_format.json_schema.schema")},
		{name: "chat/content missing", path: p, body: obj(model, `"messages":[{"role":"user"}]`), want: bad("messages[0].content")},
		{name: "chat/content a number", path: p, body: obj(model, `"messages":[{"role":"user","content":5}]`), want: bad("messages[0].content")},
		{name: "chat/4097 messages", path: p, body: obj(model, `"messages":`+tooMany), want: limited("messages")},
		{name: "chat/model name 300 bytes", path: p, body: obj(`"model":"`+longName+`"`, hi), want: limited("model")},
		{name: "chat/4097 Messages, capitalised", path: p, body: obj(model, `"Messages":`+tooMany), want: limited("Messages")},
		{name: "chat/4097 messages, key escaped", path: p, body: obj(model, `"m\u0065ssages":`+tooMany), want: limited("messages")},
		{name: "chat/model name 300 bytes, key in capitals", path: p, body: obj(`"MODEL":"`+longName+`"`, hi), want: limited("model")},
		{name: "chat/model name a path", path: p, body: obj(`"model":"../../etc/passwd"`, hi), want: oai(400, "invalid_request_error", "invalid_model_name", "model")},
		{name: "chat/model name with NUL", path: p, body: obj(`"model":"llama\u0000"`, hi), want: oai(400, "invalid_request_error", "invalid_model_name", "model")},
		{name: "chat/model name invalid UTF-8", path: p, body: obj("\"model\":\"\xff\xfe\"", hi), want: oai(400, "invalid_request_error", "invalid_model_name", "model")},
		{name: "chat/unknown model", path: p, body: obj(`"model":"no-such-model"`, hi), want: oai(404, "invalid_request_error", "model_not_found", "model")},
		{name: "chat/raw NUL in a string", path: p, body: obj(model, `"messages":[{"role":"user","content":"a`+"\x00"+`b"}]`), want: bad("").with("could not parse")},
		{name: "chat/invalid UTF-8 content is served", path: p, body: obj(model, `"max_tokens":4,"messages":[{"role":"user","content":"`+"\xff\xfe\xfd"+`"}]`), want: want{status: 200, format: fmtOK}},
		{name: "chat/lone surrogate is served", path: p, body: obj(model, `"max_tokens":4,"messages":[{"role":"user","content":"\ud800"}]`), want: want{status: 200, format: fmtOK}},
		{name: "chat/body past the limit", path: p, body: tooBig, want: oai(413, "invalid_request_error", "request_too_large", "")},
		{name: "chat/GET", path: p, want: oai(405, "invalid_request_error", "method_not_allowed", "")},
		{name: "embeddings/empty body", path: "/v1/embeddings", method: "POST", want: bad("").with("empty")},
		{name: "embeddings/no input", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`), want: bad("input")},
		{name: "embeddings/empty input", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":[]`), want: bad("input")},
		{name: "embeddings/token arrays", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":[1,2,3]`), want: bad("input")},
		{name: "embeddings/input an object", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":{}`), want: bad("input")},
		{name: "embeddings/encoding of 20000 bytes", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":"x"`, `"encoding_format":"`+huge+`"`), want: bad("encoding_format")},
		{name: "embeddings/encoding hex", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":"x"`, `"encoding_format":"hex"`), want: bad("encoding_format")},
		{name: "embeddings/dimensions negative", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":"x"`, `"dimensions":-1`), want: bad("dimensions")},
		{name: "embeddings/dimensions 1e9", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":"x"`, `"dimensions":1e9`), want: bad("dimensions")},
		{name: "embeddings/no model", path: "/v1/embeddings", body: obj(`"input":"x"`), want: bad("model")},
		{name: "embeddings/4097 inputs", path: "/v1/embeddings", body: obj(`"model":"nomic-embed-text"`, `"input":[`+fmtCount(4097, `"x"`)+`]`), want: limited("input")},
		{name: "models/id a path", path: "/v1/models/..%2F..%2Fetc%2Fpasswd", want: oai(400, "invalid_request_error", "invalid_model_name", "model")},
		{name: "v1/unknown route", path: "/v1/nope", want: oai(404, "invalid_request_error", "unknown_url", "")},
		{name: "v1/unknown route of 20000 bytes", path: "/v1/" + huge, want: oai(404, "invalid_request_error", "unknown_url", "")},
	}
}

func completionCases() []badCase {
	const p = "/v1/completions"
	prompt := func(extra ...string) string { return obj(append([]string{model, `"prompt":"Once"`}, extra...)...) }
	return []badCase{
		{name: "completions/no prompt", path: p, body: obj(model), want: bad("prompt")},
		{name: "completions/prompt a number", path: p, body: obj(model, `"prompt":5`), want: bad("prompt")},
		{name: "completions/prompt of two", path: p, body: obj(model, `"prompt":["a","b"]`), want: bad("prompt")},
		{name: "completions/temperature 1e308", path: p, body: prompt(`"temperature":1e308`), want: bad("temperature")},
		{name: "completions/temperature 5", path: p, body: prompt(`"temperature":5`), want: bad("temperature")},
		{name: "completions/top_p 5", path: p, body: prompt(`"top_p":5`), want: bad("top_p")},
		{name: "completions/presence_penalty 100", path: p, body: prompt(`"presence_penalty":100`), want: bad("presence_penalty")},
		{name: "completions/max_tokens negative", path: p, body: prompt(`"max_tokens":-5`), want: bad("max_tokens")},
		{name: "completions/n 1e9", path: p, body: prompt(`"n":1000000000`), want: bad("n")},
		{name: "completions/stop of five", path: p, body: prompt(`"stop":["a","b","c","d","e"]`), want: bad("stop")},
		{name: "completions/suffix a number", path: p, body: prompt(`"suffix":5`), want: bad("suffix")},
		{name: "completions/nested 100 deep", path: p, body: obj(model, `"prompt":`+deep), want: limited("")},
		{name: "completions/truncated JSON", path: p, body: `{"model":`, want: bad("").with("ends early")},
	}
}

func responsesCases() []badCase {
	const p = "/v1/responses"
	resp := func(extra ...string) string { return obj(append([]string{model, `"input":"hi"`}, extra...)...) }
	unsupported := func(param string) want { return oai(400, "invalid_request_error", "unsupported_parameter", param) }
	return []badCase{
		{name: "responses/store", path: p, body: resp(`"store":true`), want: unsupported("store")},
		{name: "responses/previous_response_id", path: p, body: resp(`"previous_response_id":"resp_1"`), want: unsupported("previous_response_id")},
		{name: "responses/background", path: p, body: resp(`"background":true`), want: unsupported("background")},
		{name: "responses/conversation", path: p, body: resp(`"conversation":"conv_1"`), want: unsupported("conversation")},
		{name: "responses/no model", path: p, body: obj(`"input":"hi"`), want: bad("model")},
		{name: "responses/input a number", path: p, body: obj(model, `"input":5`), want: bad("input")},
		{name: "responses/input an object", path: p, body: obj(model, `"input":{"a":[1]}`), want: bad("input")},
		{name: "responses/input item of an unknown type", path: p, body: obj(model, `"input":[{"type":"evil"}]`), want: bad("input")},
		{name: "responses/max_output_tokens negative", path: p, body: resp(`"max_output_tokens":-1`), want: bad("max_output_tokens")},
		{name: "responses/temperature 1e308", path: p, body: resp(`"temperature":1e308`), want: bad("temperature")},
		{name: "responses/top_p -3", path: p, body: resp(`"top_p":-3`), want: bad("top_p")},
		{name: "responses/schema a string", path: p, body: resp(`"text":{"format":{"type":"json_schema","name":"x","schema":"x"}}`), want: bad("text.format.schema")},
		{name: "responses/4097 input items", path: p, body: obj(model, `"input":`+tooMany), want: limited("input")},
		{name: "responses/get a stored one", path: p + "/resp_123", want: oai(404, "invalid_request_error", "not_found", "")},
	}
}

func anthropicCases() []badCase {
	const p = "/v1/messages"
	invalid := ant(400, "invalid_request_error")
	return []badCase{
		{name: "messages/empty body", path: p, method: "POST", want: invalid.with("empty")},
		{name: "messages/truncated JSON", path: p, body: `{"model":"llama3.2:1b","max_tokens":`, want: invalid},
		{name: "messages/array body", path: p, body: `[]`, want: invalid},
		{name: "messages/no model", path: p, body: obj(`"max_tokens":8`, hi), want: invalid.with("model")},
		{name: "messages/max_tokens zero", path: p, body: obj(model, `"max_tokens":0`, hi), want: invalid.with("max_tokens")},
		{name: "messages/max_tokens negative", path: p, body: obj(model, `"max_tokens":-1`, hi), want: invalid.with("max_tokens")},
		{name: "messages/max_tokens a billion", path: p, body: obj(model, `"max_tokens":1000000000`, hi), want: invalid.with("max_tokens")},
		{name: "messages/max_tokens 1e9", path: p, body: obj(model, `"max_tokens":1e9`, hi), want: invalid.with("max_tokens")},
		{name: "messages/system role", path: p, body: obj(model, `"max_tokens":8`, `"messages":[{"role":"system","content":"x"}]`), want: invalid.with("role")},
		{name: "messages/no messages", path: p, body: obj(model, `"max_tokens":8`, `"messages":[]`), want: invalid.with("messages")},
		{name: "messages/content block of an unknown type", path: p, body: obj(model, `"max_tokens":8`, `"messages":[{"role":"user","content":[{"type":"evil"}]}]`), want: invalid.with("no message")},
		{name: "messages/content block without a type", path: p, body: obj(model, `"max_tokens":8`, `"messages":[{"role":"user","content":[{"text":"x"}]}]`), want: invalid.with("messages.0.content.0")},
		{name: "messages/content block a string", path: p, body: obj(model, `"max_tokens":8`, `"messages":[{"role":"user","content":["x"]}]`), want: invalid.with("messages.0.content.0")},
		{name: "messages/content an object", path: p, body: obj(model, `"max_tokens":8`, `"messages":[{"role":"user","content":{"a":1}}]`), want: invalid.with("messages.0.content")},
		{name: "messages/content empty", path: p, body: obj(model, `"max_tokens":8`, `"messages":[{"role":"user","content":[]}]`), want: invalid.with("no message")},
		{name: "messages/temperature 1e308", path: p, body: anth(`"temperature":1e308`), want: invalid.with("temperature")},
		{name: "messages/top_p 5", path: p, body: anth(`"top_p":5`), want: invalid.with("top_p")},
		{name: "messages/top_k negative", path: p, body: anth(`"top_k":-1`), want: invalid.with("top_k")},
		{name: "messages/stream is a string", path: p, body: anth(`"stream":"yes"`), want: invalid.with("stream")},
		{name: "messages/nested 100 deep", path: p, body: anth(`"x":` + deep), want: invalid},
		{name: "messages/4097 messages", path: p, body: obj(model, `"max_tokens":8`, `"messages":`+tooMany), want: invalid.with("4096")},
		{name: "messages/model name 300 bytes", path: p, body: obj(`"model":"`+longName+`"`, `"max_tokens":8`, hi), want: invalid},
		{name: "messages/unknown model", path: p, body: obj(`"model":"no-such-model"`, `"max_tokens":8`, hi), want: ant(404, "not_found_error")},
		{name: "messages/body past the limit", path: p, body: tooBig, want: ant(413, "request_too_large")},
		{name: "messages/no credential", path: p, body: anth(), cred: credNone, want: ant(401, "authentication_error")},
		{name: "messages/wrong x-api-key", path: p, body: anth(), cred: credNone, header: []string{"X-Api-Key", "sk-wrong"}, want: ant(401, "authentication_error")},
		{name: "messages/inference key on a GET", path: p, cred: credUser, want: ant(405, "invalid_request_error")},
	}
}

func ollamaCases() []badCase {
	oops := func(msg string) want { return oll(400, msg) }
	return []badCase{
		{name: "api chat/empty body", path: "/api/chat", method: "POST", want: oops("empty")},
		{name: "api chat/truncated JSON", path: "/api/chat", body: `{"model":`, want: oops("ends early")},
		{name: "api chat/no model", path: "/api/chat", body: obj(hi), want: oops("model is required")},
		{name: "api chat/messages a string", path: "/api/chat", body: obj(model, `"messages":"x"`), want: oops("messages")},
		{name: "api chat/keep_alive an object", path: "/api/chat", body: native(`"keep_alive":{}`), want: oops("keep_alive")},
		{name: "api chat/think a number", path: "/api/chat", body: native(`"think":5`), want: oops("think")},
		{name: "api chat/options.num_gpu", path: "/api/chat", body: native(`"options":{"num_gpu":1}`), want: oops("num_gpu")},
		{name: "api chat/options.num_ctx a billion", path: "/api/chat", body: native(`"options":{"num_ctx":1000000000}`), want: oops("num_ctx")},
		{name: "api chat/options.num_predict a billion", path: "/api/chat", body: native(`"options":{"num_predict":1000000000}`), want: oops("num_predict")},
		{name: "api chat/options.temperature a string", path: "/api/chat", body: native(`"options":{"temperature":"hot"}`), want: oops("temperature")},
		{name: "api chat/options.temperature 1e308", path: "/api/chat", body: native(`"options":{"temperature":1e308}`), want: oops("temperature")},
		{name: "api chat/options.seed 1.5", path: "/api/chat", body: native(`"options":{"seed":1.5}`), want: oops("seed")},
		{name: "api chat/options.top_k 1e300", path: "/api/chat", body: native(`"options":{"top_k":1e300}`), want: oops("top_k")},
		{name: "api chat/options.stop of numbers", path: "/api/chat", body: native(`"options":{"stop":[1,2]}`), want: oops("stop")},
		{name: "api chat/options.stop a string", path: "/api/chat", body: native(`"options":{"stop":"x"}`), want: oops("stop")},
		{name: "api chat/options.stop an object", path: "/api/chat", body: native(`"options":{"stop":{}}`), want: oops("stop")},
		{name: "api chat/option named 20000 bytes", path: "/api/chat", body: native(`"options":{"` + huge + `":1}`), want: oops("not allowed")},
		{name: "api chat/options an array", path: "/api/chat", body: native(`"options":[1]`), want: oops("options")},
		{name: "api chat/unknown model", path: "/api/chat", body: obj(`"model":"no-such-model"`, `"stream":false`, hi), want: oll(404, "no-such-model")},
		{name: "api chat/model name a path", path: "/api/chat", body: obj(`"model":"../../etc/passwd"`, hi), want: oops("")},
		{name: "api chat/nested 100 deep", path: "/api/chat", body: native(`"x":` + deep), want: oops("deeper")},
		{name: "api chat/body past the limit", path: "/api/chat", body: tooBig, want: oll(413, "larger")},
		{name: "api generate/prompt a number", path: "/api/generate", body: obj(model, `"prompt":5`), want: oops("prompt")},
		{name: "api generate/images not base64", path: "/api/generate", body: obj(model, `"prompt":"x"`, `"images":["!!!"]`), want: oops("images")},
		{name: "api generate/model name 300 bytes", path: "/api/generate", body: obj(`"model":"`+longName+`"`, `"prompt":"x"`), want: oops("300 bytes")},
		{name: "api generate/unknown option", path: "/api/generate", body: obj(model, `"prompt":"x"`, `"stream":false`, `"options":{"foo":1}`), want: oops("foo")},
		{name: "api generate/4097 messages are not counted on generate", path: "/api/generate", body: obj(model, `"prompt":"x"`, `"stream":false`, `"options":{"num_predict":2}`, `"context":[`+fmtCount(10, "1")+`]`), want: want{status: 200, format: fmtOK}},
		{name: "api embed/no input answers no embeddings, as Ollama does", path: "/api/embed", body: obj(`"model":"nomic-embed-text"`), want: want{status: 200, format: fmtOK}},
		{name: "api embed/input a number", path: "/api/embed", body: obj(`"model":"nomic-embed-text"`, `"input":5`), want: oops("input")},
		{name: "api embed/truncate a string", path: "/api/embed", body: obj(`"model":"nomic-embed-text"`, `"input":"x"`, `"truncate":"x"`), want: oops("truncate")},
		{name: "api embed/no model", path: "/api/embed", body: obj(`"input":"x"`), want: oops("model is required")},
		{name: "api embed/4097 inputs", path: "/api/embed", body: obj(`"model":"nomic-embed-text"`, `"input":[`+fmtCount(4097, `"x"`)+`]`), want: oops("4096")},
		{name: "api show/no model", path: "/api/show", body: `{}`, want: oops("model is required")},
		{name: "api show/model a path", path: "/api/show", body: obj(`"model":"../../etc/passwd"`), want: oops("")},
		{name: "api show/model 300 bytes", path: "/api/show", body: obj(`"model":"` + longName + `"`), want: oops("300 bytes")},
		{name: "api show/unknown model", path: "/api/show", body: obj(`"model":"no-such-model"`), want: oll(404, "no-such-model")},
		{name: "api show/name a number", path: "/api/show", body: obj(`"name":5`), want: oops("name")},
		{name: "api/unknown route", path: "/api/nope", want: oll(404, "")},
	}
}

func adminCases(e badEnv) []badCase {
	const d = "/admin/v1/deployments"
	dep := func(extra ...string) string {
		return obj(append([]string{`"name":"x1"`, `"model":"llama3.2:1b"`}, extra...)...)
	}
	const k = "/admin/v1/keys"
	key := func(extra ...string) string { return obj(append([]string{`"name":"t2"`}, extra...)...) }
	notFound := func(param string) want { return oai(404, "invalid_request_error", "not_found", param) }
	labels65 := make([]string, 65)
	for i := range labels65 {
		labels65[i] = `"k` + strconv.Itoa(i) + `":"v"`
	}
	return []badCase{
		{name: "deployments/truncated JSON", path: d, body: `{"name":`, want: bad("").with("ends early")},
		{name: "deployments/array body", path: d, body: `[]`, want: bad("").with("JSON object")},
		{name: "deployments/bad name", path: d, body: obj(`"name":"Bad Name!"`, `"model":"llama3.2:1b"`), want: bad("name")},
		{name: "deployments/name of 20000 bytes", path: d, body: obj(`"name":"`+huge+`"`, `"model":"llama3.2:1b"`), want: bad("name")},
		{name: "deployments/replicas negative", path: d, body: dep(`"replicas":-1`), want: bad("replicas")},
		{name: "deployments/replicas a billion", path: d, body: dep(`"replicas":1000000000`), want: bad("replicas")},
		{name: "deployments/replicas 1e9", path: d, body: dep(`"replicas":1e9`), want: bad("replicas")},
		{name: "deployments/replicas a string", path: d, body: dep(`"replicas":"3"`), want: bad("replicas")},
		{name: "deployments/priority past int64", path: d, body: dep(`"priority":1e30`), want: bad("priority")},
		{name: "deployments/no model", path: d, body: obj(`"name":"x1"`), want: bad("model")},
		{name: "deployments/model a path", path: d, body: obj(`"name":"x1"`, `"model":"../../etc/passwd"`), want: bad("model")},
		{name: "deployments/bad constraint", path: d, body: dep(`"constraints":["=="]`), want: bad("constraints")},
		{name: "deployments/idle_timeout forever", path: d, body: dep(`"idle_timeout":"forever"`), want: bad("idle_timeout")},
		{name: "deployments/idle_timeout 1e308", path: d, body: dep(`"idle_timeout":1e308`), want: bad("idle_timeout")},
		{name: "deployments/idle_timeout of 20000 bytes", path: d, body: dep(`"idle_timeout":"` + huge + `"`), want: bad("idle_timeout")},
		{name: "deployments/spread_by of 20000 bytes", path: d, body: dep(`"spread_by":"` + huge + `"`), want: bad("spread_by")},
		{name: "deployments/constraint of 20000 bytes", path: d, body: dep(`"constraints":["` + huge + `"]`), want: bad("constraints")},
		{name: "deployments/65 constraints", path: d, body: dep(`"constraints":[` + fmtCount(65, `"a=b"`) + `]`), want: bad("constraints")},
		{name: "deployments/past the limit", path: d, body: tooBig, want: oai(413, "invalid_request_error", "request_too_large", "")},
		{name: "deployments/timeout of 20000 bytes", path: d + "?timeout=" + huge, want: bad("timeout")},
		{name: "deployments/spread_by not a key", path: d, body: dep(`"spread_by":"a b"`), want: bad("spread_by")},
		{name: "deployments/nested 100 deep", path: d, body: dep(`"x":` + deep), want: limited("")},
		{name: "deployments/text/plain", path: d, body: dep(), ctype: "text/plain", want: oai(415, "invalid_request_error", "unsupported_media_type", "")},
		{name: "deployments/form", path: d, body: "name=x1&model=llama3.2:1b", ctype: "application/x-www-form-urlencoded", want: oai(415, "invalid_request_error", "unsupported_media_type", "")},
		{name: "deployments/exists", path: d, body: obj(`"name":"chat"`, `"model":"llama3.2:1b"`), want: oai(409, "invalid_request_error", "conflict", "")},
		{name: "deployments/get one of 20000 bytes", path: d + "/" + huge, want: notFound("name")},
		{name: "deployments/delete a missing one", path: d + "/nope", method: "DELETE", want: notFound("name")},
		{name: "deployments/scale a missing one", path: d + "/nope/scale", body: `{"replicas":2}`, want: notFound("name")},
		{name: "deployments/scale negative", path: d + "/chat/scale", body: `{"replicas":-2}`, want: bad("replicas")},
		{name: "deployments/scale without replicas", path: d + "/chat/scale", body: `{}`, want: bad("replicas")},
		{name: "deployments/idempotency key of 300 bytes", path: d, body: dep(), header: []string{"Idempotency-Key", longName}, want: bad("Idempotency-Key")},
		{name: "keys/unknown field", path: k, body: key(`"admin":true`), want: bad("").with("admin")},
		{name: "keys/unknown field of 20000 bytes", path: k, body: key(`"` + huge + `":1`), want: bad("").with("Unrecognized")},
		{name: "keys/model pattern of 20000 bytes", path: k, body: key(`"models":["` + huge + `"]`), want: bad("models")},
		{name: "keys/misspelt field", path: k, body: key(`"model":["x"]`), want: bad("").with("model")},
		{name: "keys/role root", path: k, body: key(`"role":"root"`), want: bad("role")},
		{name: "keys/expires_in negative", path: k, body: key(`"expires_in":"-1h"`), want: bad("expires_in")},
		{name: "keys/expires_in 1e308", path: k, body: key(`"expires_in":1e308`), want: bad("expires_in")},
		{name: "keys/expires_in -1e308 days", path: k, body: key(`"expires_in":"-1e308d"`), want: bad("expires_in")},
		{name: "keys/expires_in NaN days", path: k, body: key(`"expires_in":"NaNd"`), want: bad("expires_in")},
		{name: "keys/limits negative", path: k, body: key(`"limits":{"requests_per_minute":-1}`), want: bad("limits")},
		{name: "keys/limits a string", path: k, body: key(`"limits":"x"`), want: bad("limits")},
		{name: "keys/65 models", path: k, body: key(`"models":[` + fmtCount(65, `"m"`) + `]`), want: bad("models")},
		{name: "keys/bad model pattern", path: k, body: key(`"models":["[x"]`), want: bad("models")},
		{name: "keys/name of 300 bytes", path: k, body: obj(`"name":"` + longName + `"`), want: bad("name")},
		{name: "keys/empty label key", path: k, body: key(`"labels":{"":"v"}`), want: bad("labels")},
		{name: "keys/bad jurisdiction", path: k, body: key(`"jurisdictions":["E U"]`), want: bad("jurisdictions")},
		{name: "keys/update a missing one", path: k + "/key-nope", method: "PATCH", body: `{"name":"x"}`, want: notFound("")},
		{name: "keys/update nothing", path: k + "/" + e.keyID, method: "PATCH", body: `{}`, want: bad("").with("nothing to change")},
		{name: "keys/rotate a missing one", path: k + "/key-nope/rotate", body: `{}`, want: notFound("")},
		{name: "keys/rotate with a bad grace", path: k + "/" + e.keyID + "/rotate", body: `{"grace":"abc"}`, want: bad("grace")},
		{name: "keys/delete a missing one", path: k + "/key-nope", method: "DELETE", want: notFound("")},
		{name: "keys/get a missing one", path: k + "/key-nope", want: notFound("id")},
		{name: "catalog/no name", path: "/admin/v1/catalog", body: `{"parameters":1}`, want: bad("name")},
		{name: "catalog/name of 20000 bytes", path: "/admin/v1/catalog", body: `{"name":"` + huge + `"}`, want: bad("name")},
		{name: "catalog/get a name of 20000 bytes", path: "/admin/v1/catalog/" + huge, want: bad("name")},
		{name: "catalog/name a path", path: "/admin/v1/catalog", body: `{"name":"../../x"}`, want: bad("name")},
		{name: "catalog/negative figures", path: "/admin/v1/catalog", body: `{"name":"acme/x:1b","parameters":-1,"layers":-1}`, want: bad("parameters")},
		{name: "catalog/figures 1e308", path: "/admin/v1/catalog", body: `{"name":"acme/x:1b","parameters":1e308}`, want: bad("parameters")},
		{name: "catalog/figures a string", path: "/admin/v1/catalog", body: `{"name":"acme/x:1b","layers":"x"}`, want: bad("layers")},
		{name: "catalog/built in", path: "/admin/v1/catalog", body: `{"name":"llama3.2:1b","parameters":1}`, want: oai(409, "invalid_request_error", "builtin", "name")},
		{name: "catalog/get a path", path: "/admin/v1/catalog/..%2F..%2Fx", want: bad("name")},
		{name: "catalog/delete a missing one", path: "/admin/v1/catalog/acme/nope:1b", method: "DELETE", want: notFound("name")},
		{name: "labels/missing node", path: "/admin/v1/nodes/nope/labels", method: "PUT", body: `{"labels":{"a":"b"}}`, want: notFound("")},
		{name: "labels/65 labels", path: "/admin/v1/nodes/a/labels", method: "PUT", body: obj(`"labels":` + obj(labels65...)), want: bad("labels")},
		{name: "labels/empty key", path: "/admin/v1/nodes/a/labels", method: "PUT", body: `{"labels":{"":"v"}}`, want: bad("labels")},
		{name: "labels/value of 300 bytes", path: "/admin/v1/nodes/a/labels", method: "PUT", body: `{"labels":{"a":"` + longName + `"}}`, want: bad("labels")},
		{name: "labels/not an object", path: "/admin/v1/nodes/a/labels", method: "PUT", body: `{"labels":"a=b"}`, want: bad("labels")},
		{name: "labels/value a number", path: "/admin/v1/nodes/a/labels", method: "PUT", body: `{"labels":{"a":1}}`, want: bad("labels")},
		{name: "labels/node named 20000 bytes", path: "/admin/v1/nodes/" + huge + "/labels", method: "PUT", body: `{"labels":{"a":"b"}}`, want: notFound("")},
		{name: "nodes/get one named 20000 bytes", path: "/admin/v1/nodes/" + huge, want: notFound("id")},
		{name: "snapshot/garbage", path: "/admin/v1/snapshot?force=true", body: "not a snapshot", ctype: "application/json", want: bad("")},
		{name: "snapshot/truncated", path: "/admin/v1/snapshot?force=true", body: string(e.snap[:len(e.snap)/2]), want: bad("")},
		{name: "snapshot/version 99", path: "/admin/v1/snapshot?force=true", body: `{"version":99,"state":{}}`, want: bad("")},
		{name: "snapshot/not forced", path: "/admin/v1/snapshot", body: string(e.snap), want: oai(409, "invalid_request_error", "restore_not_forced", "force")},
		{name: "snapshot/past the limit", path: "/admin/v1/snapshot?force=true", body: tooBig, want: oai(413, "invalid_request_error", "request_too_large", "")},
		{name: "cluster/remove a stranger", path: "/admin/v1/cluster/remove", body: `{"id":"nope"}`, want: notFound("id")},
		{name: "cluster/remove nobody", path: "/admin/v1/cluster/remove", body: `{}`, want: bad("id")},
		{name: "nodes/cordon a missing one", path: "/admin/v1/nodes/nope/cordon", body: `{}`, want: notFound("")},
		{name: "nodes/cordon with a bad reason", path: "/admin/v1/nodes/a/cordon", body: `{"reason":5}`, want: bad("reason")},
	}
}

func credentialCases() []badCase {
	const p = "/v1/chat/completions"
	missing := oai(401, "invalid_request_error", "invalid_api_key", "")
	forbidden := oai(403, "permission_error", "insufficient_permissions", "")
	return []badCase{
		{name: "auth/chat without a credential", path: p, body: chat(), cred: credNone, want: missing.with("didn't provide")},
		{name: "auth/chat with a wrong token", path: p, body: chat(), cred: "Bearer sk-wrong", want: missing.with("Incorrect")},
		{name: "auth/chat with Basic", path: p, body: chat(), cred: "Basic YWRtaW46YWRtaW4=", want: missing},
		{name: "auth/chat with Bearer alone", path: p, body: chat(), cred: "Bearer", want: missing},
		{name: "auth/chat with a 16 KiB token", path: p, body: chat(), cred: "Bearer " + strings.Repeat("t", 16<<10), want: missing},
		{name: "auth/chat with the token as x-api-key", path: p, body: chat(), cred: credKeyOf, want: missing},
		{name: "auth/chat with the token's prefix", path: p, body: chat(), cred: "Bearer sovra-test", want: missing},
		{name: "auth/ollama without a credential", path: "/api/tags", cred: credNone, want: oll(401, "")},
		{name: "auth/ollama with a wrong token", path: "/api/chat", body: native(), cred: "Bearer nope", want: oll(401, "")},
		{name: "auth/responses without a credential", path: "/v1/responses", body: `{}`, cred: credNone, want: missing},
		{name: "auth/admin without a credential", path: "/admin/v1/keys", cred: credNone, want: missing},
		{name: "auth/admin with an inference key", path: "/admin/v1/keys", cred: credUser, want: forbidden},
		{name: "auth/admin write with an inference key", path: "/admin/v1/deployments", body: `{"name":"x2","model":"llama3.2:1b"}`, cred: credUser, want: forbidden},
		{name: "auth/snapshot with an inference key", path: "/admin/v1/snapshot", cred: credUser, want: forbidden},
		{name: "auth/restore with an inference key", path: "/admin/v1/snapshot?force=true", body: `{}`, cred: credUser, want: forbidden},
		{name: "auth/admin with the token as x-api-key", path: "/admin/v1/keys", cred: credKeyOf, want: missing},
		{name: "auth/foreign origin", path: p, body: chat(), header: []string{"Origin", "https://evil.example"}, want: oai(403, "permission_error", "origin_not_allowed", "")},
		{name: "auth/rebound host", path: p, body: chat(), header: []string{"Host", "evil.example"}, want: oai(403, "permission_error", "host_not_allowed", "")},
		{name: "auth/peer route without a certificate", path: "/internal/v1/cluster/peers", cred: credNone, want: oai(403, "permission_error", "not_peer", "")},
		{name: "auth/forward route without a certificate", path: "/internal/v1/forward/api/chat", body: native(), want: oll(403, "certificate")},
	}
}

// rawCases are sent over TCP as written: broken HTTP, header floods and
// path tricks that an HTTP client would refuse or clean up.
func rawCases(e badEnv) []badCase {
	get := func(path, headers string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: {{host}}\r\n" + headers + "Connection: close\r\n\r\n"
	}
	post := func(path, headers, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: {{host}}\r\n" + headers + "Connection: close\r\n\r\n" + body
	}
	// sized is a body with a length header.
	sized := func(body string) string { return "Content-Length: " + strconv.Itoa(len(body)) + "\r\n" }
	const chatPath, auth, json = "/v1/chat/completions", "{{auth}}\r\n", "Content-Type: application/json\r\n"
	flood := strings.Repeat("X-Flood: 0123456789\r\n", 2000)
	missing := oai(401, "invalid_request_error", "invalid_api_key", "")
	forbidden := oai(403, "permission_error", "insufficient_permissions", "")
	unknown := oai(404, "invalid_request_error", "unknown_url", "")
	tooLarge := oai(431, "invalid_request_error", "", "")
	broken := bad("").with("not valid HTTP")
	ambiguous := bad("").with("ambiguous")
	// A body fasthttp reads ahead (8 KiB) before the handlers run.
	ahead := strings.Repeat(" ", 9000)
	body := chat()
	return []badCase{
		{name: "raw/one header of 40 KiB", raw: get("/healthz", "X-Big: "+strings.Repeat("h", 40<<10)+"\r\n"), want: tooLarge},
		{name: "raw/2000 headers", raw: get("/healthz", flood), want: tooLarge},
		{name: "raw/request line of 40 KiB", raw: get("/healthz?"+strings.Repeat("q", 40<<10), ""), want: tooLarge},
		{name: "raw/header without a colon", raw: get("/healthz", "NoColon\r\n"), want: broken},
		{name: "raw/space before a colon", raw: get("/healthz", "X-Bad : 1\r\n"), want: broken},
		{name: "raw/NUL in a header value is let through", raw: get("/healthz", "X-Nul: a\x00b\r\n"), want: want{status: 200, format: fmtOK}},
		{name: "raw/not HTTP", raw: "HELLO\r\n\r\n", want: broken},
		{name: "raw/negative Content-Length", raw: post(chatPath, auth+"Content-Length: -1\r\n", ""), want: broken},
		{name: "raw/Content-Length not a number", raw: post(chatPath, auth+"Content-Length: 1e3\r\n", ""), want: broken},
		{name: "raw/two Content-Lengths that differ", raw: post(chatPath, auth+json+"Content-Length: 5\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n", body), want: ambiguous},
		{name: "raw/Content-Length with chunked", raw: post(chatPath, auth+json+sized(body)+"Transfer-Encoding: chunked\r\n", strconv.FormatInt(int64(len(body)), 16)+"\r\n"+body+"\r\n0\r\n\r\n"), want: ambiguous},
		{name: "raw/Transfer-Encoding not chunked", raw: post(chatPath, auth+json+"Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), want: ambiguous},
		{name: "raw/Transfer-Encoding gzip then chunked", raw: post(chatPath, auth+json+"Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), want: ambiguous},
		{name: "raw/two Transfer-Encodings", raw: post(chatPath, auth+json+"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), want: ambiguous},
		{name: "raw/body shorter than declared", raw: post(chatPath, auth+json+"Content-Length: 100\r\n", "{}"), halfClose: true, want: broken},
		{name: "raw/chunk size not hex", raw: post(chatPath, auth+json+"Transfer-Encoding: chunked\r\n", "zz\r\n{}\r\n0\r\n\r\n"), want: bad("")},
		{name: "raw/chunked past the limit", raw: post(chatPath, auth+json+"Transfer-Encoding: chunked\r\n", strings.Repeat("10000\r\n"+strings.Repeat("x", 0x10000)+"\r\n", 5)+"0\r\n\r\n"), want: oai(413, "invalid_request_error", "request_too_large", "")},
		{name: "raw/chunked admin body past the limit", raw: post("/admin/v1/snapshot?force=true", auth+json+"Transfer-Encoding: chunked\r\n", strings.Repeat("10000\r\n"+strings.Repeat("x", 0x10000)+"\r\n", 5)+"0\r\n\r\n"), want: oai(413, "invalid_request_error", "request_too_large", "")},
		{name: "raw/declared past the limit", raw: post(chatPath, auth+json+"Content-Length: 999999999999\r\n", ahead), want: oai(413, "invalid_request_error", "request_too_large", "")},
		{name: "raw/model id badly escaped", raw: get("/v1/models/%zz", auth), want: bad("model")},
		{name: "raw/dot-dot to admin without a credential", raw: get("/v1/../admin/v1/keys", ""), want: missing},
		{name: "raw/dot-dot to admin with an inference key", raw: get("/v1/../admin/v1/keys", "{{user}}\r\n"), want: unknown},
		{name: "raw/encoded dot-dot to admin", raw: get("/v1/%2e%2e/admin/v1/keys", "{{user}}\r\n"), want: unknown},
		{name: "raw/encoded slashes to admin", raw: get("/admin%2Fv1%2Fkeys", "{{user}}\r\n"), want: unknown},
		{name: "raw/double slash to admin", raw: get("//admin/v1/keys", "{{user}}\r\n"), want: unknown},
		{name: "raw/dot-dot from api to snapshot", raw: get("/api/../admin/v1/snapshot", "{{user}}\r\n"), want: oll(404, "Unknown request URL")},
		{name: "raw/dot-dot beyond the root", raw: get("/../../../admin/v1/keys", "{{user}}\r\n"), want: unknown},
		{name: "raw/backslashes", raw: get(`/v1\..\admin\v1\keys`, "{{user}}\r\n"), want: unknown},
		{name: "raw/NUL in the path", raw: get("/admin/v1/keys%00", "{{user}}\r\n"), want: forbidden},
		{name: "raw/upper-case admin route", raw: get("/ADMIN/V1/KEYS", "{{user}}\r\n"), want: forbidden},
		{name: "raw/upper-case ollama route", raw: post("/API/CHAT", sized(native()), native()), want: oll(401, "")},
		{name: "raw/upper-case messages route", raw: post("/V1/MESSAGES", sized(anth()), anth()), want: ant(401, "authentication_error")},
		{name: "raw/upper-case messages route, bad model", raw: post("/V1/MESSAGES", "X-Api-Key: "+e.userKey+"\r\n"+sized(obj(`"max_tokens":8`, hi)), obj(`"max_tokens":8`, hi)), want: ant(400, "invalid_request_error").with("model")},
		{name: "raw/absolute URI to another host", raw: "GET http://evil.example/admin/v1/keys HTTP/1.1\r\nHost: {{host}}\r\n{{user}}\r\nConnection: close\r\n\r\n", want: oai(403, "permission_error", "host_not_allowed", "")},
		{name: "raw/OPTIONS preflight from a foreign origin", raw: "OPTIONS /admin/v1/keys HTTP/1.1\r\nHost: {{host}}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n", want: oai(403, "permission_error", "origin_not_allowed", "")},
	}
}
