package ollama

import (
	"reflect"
	"testing"

	"github.com/ollama/ollama/api"
)

// FuzzChatLine holds the fast path to encoding/json: whenever it takes
// a line, encoding/json reads the same line the same way.
func FuzzChatLine(f *testing.F) {
	for _, s := range []string{
		string(tokenLine), string(finalLine),
		`{"model":"m","created_at":"2026-12-03T22:15:15Z","message":{"role":"assistant","thinking":"hm"},"done":false}`,
		`{"model":"m","message":{"role":"assistant","content":"a\u00e9\n\"b\""},"done":false}`,
		`{"Model":"m","message":{"content":"x"}}`,
		`{"model":"m","message":{"content":"x"},"model":"n"}`,
		`{"model":"m","message":{"content":"x","tool_calls":[]}}`,
		`{"model":"m","message":null}`,
		`{"model":"m","created_at":"yesterday"}`,
		`{"model":"m","done":true,"done_reason":"length","eval_count":99999999999999999999}`,
		`{"done":true,"eval_duration":-5,"prompt_eval_count":0}`,
		`{"message":{"content":"\xff"}}`,
		`{"model":"\ud800","message":{"content":"x"}}`,
		`{"error":"boom"}`,
		`[1]`, `"x"`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := chatLine(b)
		if !ok {
			return
		}
		full, err := decodeLine[api.ChatResponse](b)
		if err != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("line %q:\nfast %+v\nfull %+v", b, fast, full)
		}
	})
}

// TestChatLineTakesItsLines: the lines the fast path exists for take
// it, and the ones it must leave do.
func TestChatLineTakesItsLines(t *testing.T) {
	for _, tc := range []struct {
		line string
		fast bool
	}{
		{string(tokenLine), true},
		{`{"model":"m","created_at":"2026-12-03T22:15:15Z","message":{"role":"assistant","thinking":"hm"},"done":false}`, true},
		{string(finalLine), true},
		{`{"model":"m","done":true,"eval_count":1.5}`, false},
		{`{"model":"m","done":true,"eval_duration":"5"}`, false},
		{`{"model":"m","message":{"content":"x","tool_calls":[{"function":{"name":"f"}}]},"done":false}`, false},
		{`{"Model":"m","message":{"content":"x"}}`, false},
		{`{"message":{"content":"\xff"}}`, false},
		{`{"model":"\ud800","message":{"content":"x"}}`, false},
		{`{"model":"\udc00x","message":{"content":"x"}}`, false},
		{`{"model":"\ud83d\ude00","message":{"content":"x"}}`, true},
		{`{"error":"boom"}`, false},
	} {
		if _, ok := chatLine([]byte(tc.line)); ok != tc.fast {
			t.Errorf("chatLine(%s) took the fast path: %v, want %v", tc.line, ok, tc.fast)
		}
		r, err := decodeChatLine([]byte(tc.line))
		want, werr := decodeLine[api.ChatResponse]([]byte(tc.line))
		if (err == nil) != (werr == nil) || !reflect.DeepEqual(r, want) {
			t.Errorf("decodeChatLine(%s) = %+v, %v; want %+v, %v", tc.line, r, err, want, werr)
		}
	}
}
