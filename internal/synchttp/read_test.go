package synchttp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// Answers as Ollama sends them, and a few that readResponse leaves to
// net/http.
var (
	ollamaJSON = "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Length: 27\r\n\r\n" +
		`{"model":"m","done":true}` + "\n\n"
	ollamaStream = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n" +
		"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n" +
		chunk(`{"model":"m","response":"Hi","done":false}`+"\n") +
		chunk(`{"model":"m","response":" there","done":false}`+"\n") +
		chunk(`{"model":"m","response":"","done":true,"eval_count":2}`+"\n") +
		"0\r\n\r\n"
	ollamaNotFound = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Length: 31\r\n\r\n" +
		`{"error":"model 'x' not found"}`
	ollamaError = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Length: 22\r\n\r\n" +
		`{"error":"out of mem"}`
)

// chunk is s as one chunk of a chunked body.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

var readSeeds = []string{
	ollamaJSON,
	ollamaStream,
	ollamaNotFound,
	ollamaError,
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\nrest",
	"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
	ollamaJSON + ollamaNotFound,
	ollamaStream + ollamaJSON,
	"HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\n\r\nuntil the end",
	"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nok",
	"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX-lower-CASE: v \r\nconnection: keep-alive\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxy",
	"HTTP/1.1 200 OK\r\nConnection: Close\r\nTransfer-Encoding: Chunked\r\n\r\n2;ext=1\r\nab\r\n0\r\n\r\n",
	"HTTP/1.1 200 \r\nContent-Length:  007 \r\nX-Empty:\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n1234567",
	"HTTP/1.1 600 Odd\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 O\tK\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\nx",
}

// FuzzReadResponse: readResponse and http.ReadResponse read the same
// bytes into the same answers and bodies, and leave the same bytes
// unread.
func FuzzReadResponse(f *testing.F) {
	for _, s := range readSeeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		compareReads(t, data, int(chunk))
	})
}

// chunkReader gives data at most n bytes a read (all of it when n is 0).
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.n > 0 && len(p) > r.n {
		p = p[:r.n]
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func compareReads(t *testing.T, data []byte, chunk int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://h/api/chat", nil)
	wsrc, gsrc := &chunkReader{data: data, n: chunk}, &chunkReader{data: data, n: chunk}
	want, got := bufio.NewReaderSize(wsrc, bufSize), bufio.NewReaderSize(gsrc, bufSize)
	// consumed is how far into data a reader has read.
	consumed := func(src *chunkReader, br *bufio.Reader) int { return len(data) - len(src.data) - br.Buffered() }
	for i := 0; i < 4; i++ {
		wr, werr := http.ReadResponse(want, req)
		gr, gerr := readResponse(got, req)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("answer %d: error %v, net/http's %v", i, gerr, werr)
		}
		if werr != nil {
			break // the same bytes are left unread: checked below
		}
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"Status", gr.Status, wr.Status},
			{"StatusCode", gr.StatusCode, wr.StatusCode},
			{"Proto", gr.Proto, wr.Proto},
			{"ProtoMajor", gr.ProtoMajor, wr.ProtoMajor},
			{"ProtoMinor", gr.ProtoMinor, wr.ProtoMinor},
			{"Header", gr.Header, wr.Header},
			{"ContentLength", gr.ContentLength, wr.ContentLength},
			{"TransferEncoding", gr.TransferEncoding, wr.TransferEncoding},
			{"Close", gr.Close, wr.Close},
			{"Uncompressed", gr.Uncompressed, wr.Uncompressed},
			{"Trailer", gr.Trailer, wr.Trailer},
			{"Request", gr.Request, wr.Request},
			{"NoBody", gr.Body == http.NoBody, wr.Body == http.NoBody},
		} {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Fatalf("answer %d: %s %#v, net/http's %#v", i, c.name, c.got, c.want)
			}
		}
		gb, gerr := io.ReadAll(gr.Body)
		wb, werr := io.ReadAll(wr.Body)
		if !bytes.Equal(gb, wb) || (gerr == nil) != (werr == nil) {
			t.Fatalf("answer %d: body %q (%v), net/http's %q (%v)", i, gb, gerr, wb, werr)
		}
		if !reflect.DeepEqual(gr.Trailer, wr.Trailer) {
			t.Fatalf("answer %d: trailer after the body %#v, net/http's %#v", i, gr.Trailer, wr.Trailer)
		}
		// Reading again gives the same too.
		gn, gerr := gr.Body.Read(make([]byte, 8))
		wn, werr := wr.Body.Read(make([]byte, 8))
		if gn != wn || (gerr == nil) != (werr == nil) {
			t.Fatalf("answer %d: read after the end %d (%v), net/http's %d (%v)", i, gn, gerr, wn, werr)
		}
		if g, w := consumed(gsrc, got), consumed(wsrc, want); g != w {
			t.Fatalf("answer %d: %d bytes read with the body, net/http %d", i, g, w)
		}
		if gerr != nil || werr != nil {
			// Neither goes on reading a connection whose body failed.
			if gerr != io.EOF || werr != io.EOF {
				break
			}
		}
		if wr.Close {
			break
		}
	}
	rest, _ := io.ReadAll(got)
	wrest, _ := io.ReadAll(want)
	if !bytes.Equal(rest, wrest) {
		t.Fatalf("left %q unread, net/http %q", rest, wrest)
	}
}

// TestReadResponseTakesTheFastPath: the answers Ollama sends are read by
// readResponse itself (so that a change cannot send them all to net/http
// unnoticed), into what net/http would read.
func TestReadResponseTakesTheFastPath(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		body      string
	}{
		{"json", ollamaJSON, "*synchttp.fixedBody"},
		{"stream", ollamaStream, "*synchttp.chunkedBody"},
		{"not found", ollamaNotFound, "*synchttp.fixedBody"},
		{"error", ollamaError, "*synchttp.fixedBody"},
		{"empty", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.raw), bufSize)
			if resp := parseHeadOf(t, br); resp == nil {
				t.Fatal("left to net/http")
			}
			resp, err := readResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", resp.Body); tc.body != "" && got != tc.body {
				t.Fatalf("body %s, want %s", got, tc.body)
			}
			compareReads(t, []byte(tc.raw), 0)
		})
	}
	// And through the transport, the exchange keeps it.
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"done":true}`))
	}, false)
	hc := client(t, New())
	resp, err := hc.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, ok := resp.Body.(*body)
	if !ok {
		t.Fatalf("body %T", resp.Body)
	}
	if _, ok := b.rc.(*fixedBody); !ok {
		t.Fatalf("answer read by net/http (body %T)", b.rc)
	}
	if got, _ := io.ReadAll(resp.Body); string(got) != `{"done":true}` {
		t.Fatalf("body %q", got)
	}
}

// parseHeadOf parses the head buffered in br without consuming it.
func parseHeadOf(t *testing.T, br *bufio.Reader) *answer {
	t.Helper()
	_, _ = br.Peek(1)
	buf, _ := br.Peek(br.Buffered())
	n, lines := headLen(buf)
	if n < 0 {
		return nil
	}
	return parseHead(buf[:n], lines, nil)
}

func BenchmarkReadResponse(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Date: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Length: 1024\r\n\r\n" +
		strings.Repeat("x", 1024)
	for _, bc := range []struct {
		name string
		read func(*bufio.Reader, *http.Request) (*http.Response, error)
	}{
		{"net-http", http.ReadResponse},
		{"synchttp", readResponse},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := strings.NewReader(raw)
			br := bufio.NewReaderSize(src, bufSize)
			req, _ := http.NewRequest(http.MethodPost, "http://h/api/chat", nil)
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(raw)
				br.Reset(src)
				resp, err := bc.read(br, req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
