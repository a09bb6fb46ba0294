package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
)

// Bodies the fast path exists for, as the OpenAI SDK and Ollama's client
// send them.
const (
	openaiBody = `{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi \u00e9\ud83d\ude00"}],"model":"llama3","stream":false,"temperature":0.7,"top_p":1,"max_tokens":128,"seed":-3,"n":1,"stream_options":{"include_usage":true},"stop":["\n\n","END"],"presence_penalty":0,"frequency_penalty":-0.5e-1,"max_completion_tokens":64}`
	nativeBody = `{
  "model": "llama3",
  "messages": [{"role": "System", "content": "You are terse."}, {"role": "user", "content": "Say hi"}],
  "stream": true,
  "options": {"temperature": 0.2, "num_ctx": 4096, "stop": "x", "penalize_newline": false}
}`
)

// decodeBoth decodes b with fastDecode and encoding/json into new values
// of v's type.
func decodeBoth(b []byte, v any) (fast, full any, ok bool, err error) {
	t := reflect.TypeOf(v).Elem()
	fast, full = reflect.New(t).Interface(), reflect.New(t).Interface()
	ok = fastDecode(b, fast)
	if !ok && !reflect.ValueOf(fast).Elem().IsZero() {
		panic("fastDecode declined but set its value")
	}
	return fast, full, ok, json.Unmarshal(b, full)
}

// decodeSeeds are bodies for the fast decoder: the plain ones it takes
// and the near misses it must leave to encoding/json.
var decodeSeeds = []string{
	openaiBody, nativeBody,
	`{"model":"m","messages":[]}`,
	`{"Model":"m","messages":[]}`,
	`{"model":"m","MESSAGES":[{"role":"user","content":"x"}]}`,
	`{"model":"m","model":"n"}`,
	`{"messages":[{"role":"user","content":"a","content":"b"}]}`,
	`{"model":null}`,
	`{"stream":null,"temperature":null}`,
	`{"messages":[{"role":"USER","content":"x"}]}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
	`{"messages":[{"role":"user","content":"x","images":["aGk="]}]}`,
	`{"model":"a\u0041\n\t\"\\\/\b\f\r"}`,
	`{"model":"\ud800"}`, `{"model":"\ud800\u0041"}`, `{"model":"\udc00"}`,
	`{"model":"\x"}`, `{"model":"\u12"}`, "{\"model\":\"a\x01\"}",
	"{\"model\":\"\xff\"}", "{\"options\":{\"\xfe\":1}}",
	`{"temperature":1e400}`, `{"temperature":1E-2}`, `{"temperature":01}`, `{"temperature":+1}`,
	`{"temperature":.5}`, `{"temperature":1.}`, `{"temperature":nan}`, `{"temperature":-inf}`,
	`{"max_tokens":1.0}`, `{"max_tokens":1e3}`, `{"max_tokens":99999999999999999999}`, `{"seed":-0}`,
	`{"options":{"a":1,"a":"b"}}`, `{"options":{"a":[1]}}`, `{"options":{"a":null}}`, `{"options":{"seed":-1.5e3}}`,
	`{"stop":"x"}`, `{"stop":[]}`, `{"stop":["a",1]}`,
	`{"stream_options":{}}`, `{"stream_options":{"include_usage":1}}`, `{"stream_options":{"Include_Usage":true}}`,
	`{"keep_alive":"5m"}`, `{"think":true}`, `{"format":"json"}`, `{"tools":[]}`, `{"user":"u"}`,
	`{"mod\u0065l":"m"}`, `{"model":"m"} x`, `{"model":"m",}`, `[{"model":"m"}]`, `"x"`, `{`,
}

// FuzzDecodeChatRequest holds the fast path to encoding/json: whenever it
// takes a body, encoding/json decodes it without error into the same
// value.
func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, native bool) {
		var v any = new(chatRequest)
		if native {
			v = new(api.ChatRequest)
		}
		fast, full, ok, err := decodeBoth(b, v)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("body %q:\nfast %#v\nfull %#v", b, fast, full)
		}
	})
}

// TestFastDecodeTakesPlainBodies: the bodies the fast path exists for
// take it (so that it cannot quietly fall out of use), decode as
// encoding/json decodes them, and the ones it must leave do.
func TestFastDecodeTakesPlainBodies(t *testing.T) {
	for _, tc := range []struct {
		body   string
		native bool
		fast   bool
	}{
		{openaiBody, false, true},
		{nativeBody, true, true},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`, false, true},
		{`{"model":"m","messages":[{"role":"USER","content":"hi"}]}`, true, true},
		{nativeBody, false, false}, // options is not an OpenAI field
		{`{"Model":"m"}`, false, false},
		{`{"model":"m","model":"n"}`, true, false},
		{`{"model":"m","stream":null}`, true, false},
		{`{"model":"m","keep_alive":"5m"}`, true, false},
		{`{"model":"m","user":"u"}`, false, false},
		{`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, false, false},
		{`{"max_tokens":1e3}`, false, false},
		{`{"temperature":01}`, false, false},
		{`{"model":"\ud800"}`, false, false},
		{"{\"model\":\"\xff\"}", true, false},
	} {
		var v any = new(chatRequest)
		if tc.native {
			v = new(api.ChatRequest)
		}
		fast, full, ok, err := decodeBoth([]byte(tc.body), v)
		if ok != tc.fast {
			t.Errorf("fastDecode(%s) into %T took the fast path: %v, want %v", tc.body, v, ok, tc.fast)
		}
		if ok && (err != nil || !reflect.DeepEqual(fast, full)) {
			t.Errorf("fastDecode(%s) = %#v; encoding/json: %#v, %v", tc.body, fast, full, err)
		}
	}
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("w", maxFastBody) + `"}]}`
	if fastDecode([]byte(big), new(api.ChatRequest)) {
		t.Errorf("a body of %d bytes took the fast path", len(big))
	}
}

// chatBodies are a /v1 and an /api/chat body of a representative size: a
// system prompt of about 150 words and a question of about 56.
func chatBodies() (openaiBody, nativeBody []byte) {
	system := strings.TrimSpace(strings.Repeat("You are a careful assistant who answers in plain words, cites sources when asked, and says so when unsure. ", 8))
	user := strings.TrimSpace(strings.Repeat("Could you explain how the tides depend on the moon and the sun, please? ", 4))
	msgs, _ := json.Marshal([]map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}})
	openaiBody = []byte(`{"model":"llama3.2:1b","messages":` + string(msgs) + `,"stream":false,"temperature":0.7}`)
	nativeBody = []byte(`{"model":"llama3.2:1b","messages":` + string(msgs) + `,"stream":false,"options":{"temperature":0.7}}`)
	return openaiBody, nativeBody
}

func BenchmarkDecodeChatRequest(b *testing.B) {
	ob, nb := chatBodies()
	for _, bc := range []struct {
		name string
		body []byte
		v    func() any
	}{
		{"v1", ob, func() any { return new(chatRequest) }},
		{"native", nb, func() any { return new(api.ChatRequest) }},
	} {
		if !fastDecode(bc.body, bc.v()) {
			b.Fatalf("%s: the body does not take the fast path", bc.name)
		}
		b.Run(bc.name+"/fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fastDecode(bc.body, bc.v())
			}
		})
		b.Run(bc.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := json.Unmarshal(bc.body, bc.v()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
