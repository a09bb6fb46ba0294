package ollama

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

// FuzzReadLines reads an answer from Ollama as Chat and Generate do: its
// NDJSON lines, each decoded. With a small buffer and line bound, so that
// long lines are reached:
//   - the lines passed on are the answer's lines that are not blank, in
//     order and whole, until a line longer than the bound ends the read
//     with backend.ErrFailed;
//   - no line passed on is longer than the bound and the buffer, and a
//     refused one is longer than the bound;
//   - decoding a line never panics, and fails only with
//     backend.ErrFailed.
func FuzzReadLines(f *testing.F) {
	for _, s := range []string{
		"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"}}\n{\"model\":\"m\",\"done\":true,\"done_reason\":\"stop\"}\n",
		"{\"response\":\"x\"}\r\n\n   \n{\"response\":\"y\",\"done\":true}",
		"{\"error\":\"out of memory\"}\n",
		"{\"error\":5}\n{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]}}\n",
		"not json\n",
		"{\"response\":\"" + string(bytes.Repeat([]byte("long "), 40)) + "\"}\n",
		"", "\n", "{",
	} {
		f.Add([]byte(s))
	}
	const bound, buffer = 64, 16
	f.Fuzz(func(t *testing.T, data []byte) {
		var got [][]byte
		err := readLines(context.Background(), bufio.NewReaderSize(bytes.NewReader(data), buffer), bound, func(b []byte) error {
			if len(b) > bound+buffer {
				t.Fatalf("a line of %d bytes passed on (bound %d)", len(b), bound)
			}
			got = append(got, bytes.Clone(b))
			if _, err := decodeLine[api.ChatResponse](b); err != nil && !errors.Is(err, backend.ErrFailed) {
				t.Fatalf("line %q: chat decode error %v", b, err)
			}
			if _, err := decodeLine[api.GenerateResponse](b); err != nil && !errors.Is(err, backend.ErrFailed) {
				t.Fatalf("line %q: generate decode error %v", b, err)
			}
			return nil
		})
		if err != nil && !errors.Is(err, backend.ErrFailed) {
			t.Fatalf("%q: error %v", data, err)
		}
		checkLines(t, data, got, err != nil, bound, buffer)
	})
}

// checkLines checks the lines passed on against the answer's: its lines
// that are not blank, in order, up to the one refused (when refused),
// which is longer than bound; no line past bound+buffer is let through.
func checkLines(t *testing.T, data []byte, got [][]byte, refused bool, bound, buffer int) {
	t.Helper()
	j := 0
	for _, line := range answerLines(data) {
		if refused && j == len(got) && len(line) > bound {
			return // the line refused
		}
		if len(line) > bound+buffer {
			t.Fatalf("%q: a line of %d bytes was not refused", data, len(line))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if j >= len(got) {
			t.Fatalf("%q: %d lines passed on; line %q was not", data, len(got), line)
		}
		if !bytes.Equal(got[j], line) {
			t.Fatalf("%q: line %d passed on is %q, want %q", data, j, got[j], line)
		}
		j++
	}
	if refused || j != len(got) {
		t.Fatalf("%q: %d lines passed on, %d in the answer, refused %v", data, len(got), j, refused)
	}
}

// answerLines are the lines of an answer, each with its newline (the
// last may have none).
func answerLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data
		if i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		out = append(out, line)
	}
	return out
}
