package bench

import (
	"bufio"
	"strings"
	"testing"
	"testing/iotest"
)

// feed runs text through c and reports whether an event with content was
// seen.
func feed(c EventCounter, text string) bool {
	seen := false
	_ = ReadLines(bufio.NewReaderSize(strings.NewReader(text), 16), c, func() { seen = true })
	return seen
}

func TestSSECounter(t *testing.T) {
	chunk := func(content string) string {
		return `data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":"` + content + `"},"finish_reason":null}]}` + "\n\n"
	}
	final := `data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}` + "\n\n"
	done := "data: [DONE]\n\n"
	tests := []struct {
		name     string
		in       string
		events   int
		complete bool
		content  bool
	}{
		{"full stream", chunk("Hel") + chunk("lo") + final + done, 3, true, true},
		{"no end marker", chunk("Hel") + chunk("lo") + final, 3, false, true},
		{"end marker only", done, 0, true, false},
		{"empty", "", 0, false, false},
		{"comments and keep-alives ignored", ": ping\n\n" + chunk("a") + ":\n\n" + done, 1, true, true},
		{"event and id fields", "event: message\nid: 7\n" + chunk("a") + done, 1, true, true},
		{"CRLF line ends", strings.ReplaceAll(chunk("a")+chunk("b")+done, "\n", "\r\n"), 2, true, true},
		{"data without a space", "data:{\"content\":\"x\"}\n\n" + "data:[DONE]\n\n", 1, true, true},
		{"multi-line data is one event", "data: {\"a\":1,\ndata: \"content\":\"x\"}\n\n" + done, 1, true, true},
		{"event cut before its blank line", chunk("a") + "data: {\"content\":\"b\"}\n", 1, false, true},
		{"events after the end marker", chunk("a") + done + chunk("b"), 1, false, true},
		{"blank lines alone are no events", "\n\n\n" + chunk("a") + "\n\n" + done, 1, true, true},
		{"empty content only", final + done, 1, true, false},
		{"[DONE] inside multi-line data is data", "data: [DONE]\ndata: more\n\n" + done, 1, true, false},
		{"data field with no colon", "data\n\n" + done, 1, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &SSECounter{}
			content := feed(c, tt.in)
			if c.Events() != tt.events || c.Complete() != tt.complete || content != tt.content {
				t.Errorf("events %d complete %v content %v, want %d %v %v",
					c.Events(), c.Complete(), content, tt.events, tt.complete, tt.content)
			}
		})
	}
}

func TestSSECounterFirstContent(t *testing.T) {
	c := &SSECounter{}
	lines := []string{
		`data: {"choices":[{"delta":{"role":"assistant","content":""}}]}`, "",
		`data: {"choices":[{"delta":{"content":"Hi"}}]}`,
		"", // completes the first event with text
		`data: {"choices":[{"delta":{"content":"!"}}]}`, "",
	}
	var got []int
	for i, l := range lines {
		if c.Line([]byte(l)) {
			got = append(got, i)
		}
	}
	if len(got) != 1 || got[0] != 3 {
		t.Errorf("first content reported at lines %v, want [3]", got)
	}
}

func TestNDJSONCounter(t *testing.T) {
	tok := func(s string) string {
		return `{"model":"m","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"` + s + `"},"done":false}` + "\n"
	}
	final := `{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2}` + "\n"
	tests := []struct {
		name     string
		in       string
		events   int
		complete bool
		content  bool
	}{
		{"full stream", tok("Hel") + tok("lo") + final, 3, true, true},
		{"cut before done", tok("Hel") + tok("lo"), 2, false, true},
		{"done only", final, 1, true, false},
		{"empty", "", 0, false, false},
		{"blank lines ignored", "\n" + tok("a") + "\n\n" + final + "\n", 2, true, true},
		{"lines after done", tok("a") + final + tok("b"), 2, false, true},
		{"last line without newline", tok("a") + strings.TrimSuffix(final, "\n"), 2, true, true},
		{"CRLF", strings.ReplaceAll(tok("a")+final, "\n", "\r\n"), 2, true, true},
		{"spaced JSON", `{"message": {"content": "x"}, "done": false}` + "\n" + `{"done": true}` + "\n", 2, true, true},
		{"done false is not the end", `{"done":false,"x":{"done":false}}` + "\n", 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &NDJSONCounter{}
			content := feed(c, tt.in)
			if c.Events() != tt.events || c.Complete() != tt.complete || content != tt.content {
				t.Errorf("events %d complete %v content %v, want %d %v %v",
					c.Events(), c.Complete(), content, tt.events, tt.complete, tt.content)
			}
		})
	}
}

func TestHasContent(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"content":"a"}`, true},
		{`{"content":""}`, false},
		{`{"content": "a"}`, true},
		{`{"content":null}`, false},
		{`{"content":"","reasoning_content":"think"}`, false},
		{`{"role":"assistant"}`, false},
		{`{"content":"`, false},
		{`{"content":`, false},
	}
	for _, tt := range tests {
		if got := hasContent([]byte(tt.in)); got != tt.want {
			t.Errorf("hasContent(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestReadLinesLongLines(t *testing.T) {
	long := strings.Repeat("x", 100)
	in := `{"content":"` + long + `"}` + "\n" + `{"done":true,"pad":"` + long + `"}`
	c := &NDJSONCounter{}
	// A 16-byte buffer and one-byte reads force lines across many fills.
	err := ReadLines(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Events() != 2 || !c.Complete() {
		t.Errorf("events %d complete %v, want 2 true", c.Events(), c.Complete())
	}
}

func TestReadLinesTooLong(t *testing.T) {
	in := strings.Repeat("x", maxLine+10)
	err := ReadLines(bufio.NewReaderSize(strings.NewReader(in), 4096), &NDJSONCounter{}, nil)
	if err != errLineTooLong {
		t.Errorf("err = %v, want %v", err, errLineTooLong)
	}
}

func TestReadLinesError(t *testing.T) {
	r := iotest.TimeoutReader(strings.NewReader("{\"done\":false}\n{\"done\":true}\n"))
	err := ReadLines(bufio.NewReaderSize(r, 16), &NDJSONCounter{}, nil)
	if err == nil {
		t.Error("a read error was not returned")
	}
}
