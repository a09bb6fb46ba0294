package synchttp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"sync"
)

// net/http's ReadResponse is general (obs-folded lines, HTTP/1.0, bodies
// ended by the connection's close, trailers declared ahead) and costs,
// per answer, a textproto reader, a canonical key and a slice per header
// line, a transfer reader and a body wrapped around a LimitReader. The
// answers sovra reads from its Ollama are plain: an HTTP/1.1 status line
// and a few header lines, all arrived in the connection's first read,
// with a Content-Length or a chunked body. readResponse parses those
// itself, from the bytes already buffered, into the same *http.Response
// net/http would make; anything else goes to net/http with nothing
// consumed (FuzzReadResponse holds the two to the same results).

var crlfcrlf = []byte("\r\n\r\n")

// readResponse reads an answer to req from br as http.ReadResponse does.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if req != nil && req.Method == http.MethodHead {
		return http.ReadResponse(br, req)
	}
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			// What ReadResponse returns when its first read fails.
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	buf, _ := br.Peek(br.Buffered())
	n, lines := headLen(buf)
	if n < 0 {
		return http.ReadResponse(br, req)
	}
	a := parseHead(buf[:n], lines, req)
	if a == nil {
		return http.ReadResponse(br, req)
	}
	_, _ = br.Discard(n + 2)
	resp := &a.resp
	switch {
	case resp.ContentLength < 0:
		resp.Body = &chunkedBody{br: br, cr: httputil.NewChunkedReader(br), resp: resp}
	case resp.ContentLength == 0:
		resp.Body = http.NoBody
	default:
		a.fixed = fixedBody{br: br, n: resp.ContentLength, closing: resp.Close}
		resp.Body = &a.fixed
	}
	return resp, nil
}

// headLen returns the length of the status line and header lines at
// the start of buf, up to the empty line that ends them, and how many
// header lines there are; or -1 when the empty line is not in buf or a
// line ends in a bare LF.
func headLen(buf []byte) (n, lines int) {
	for i := 0; ; lines++ {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 1 || buf[i+j-1] != '\r' {
			return -1, 0
		}
		if j == 1 {
			return i, lines - 1
		}
		i += j + 1
	}
}

// answer is what readResponse allocates for an answer, in one piece.
type answer struct {
	resp  http.Response
	fixed fixedBody
	strs  [6]string // the values of the first header names
}

// parseHead parses a status line and header lines, each ended by CRLF,
// into a response without a body, or returns nil when the head is one
// readResponse leaves to net/http.
func parseHead(head []byte, lines int, req *http.Request) *answer {
	const proto = "HTTP/1.1 "
	// Cheap checks before the one allocation that holds every string.
	if len(head) < len(proto)+5 || string(head[:len(proto)]) != proto {
		return nil
	}
	s := string(head)

	i := strings.Index(s, "\r\n")
	status := s[len(proto):i]
	if len(status) < 3 || status[0] < '2' || status[0] > '5' || !isDigit(status[1]) || !isDigit(status[2]) {
		return nil
	}
	code := int(status[0]-'0')*100 + int(status[1]-'0')*10 + int(status[2]-'0')
	if code == 204 || code == 304 {
		return nil
	}
	if len(status) > 3 {
		if status[3] != ' ' {
			return nil
		}
		for j := 4; j < len(status); j++ {
			if c := status[j]; c < ' ' || c > '~' {
				return nil
			}
		}
	}
	rest := s[i+2:]

	a := new(answer)
	h := make(http.Header, lines)
	strs := a.strs[:]
	if lines > len(strs) {
		strs = make([]string, lines)
	}
	var (
		cl               int64 = -1
		chunked, closing bool
	)
	for len(rest) > 0 {
		i := strings.Index(rest, "\r\n")
		line := rest[:i]
		rest = rest[i+2:]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil
		}
		k := line[:colon]
		v := line[colon+1:]
		for j := 0; j < len(v); j++ {
			if c := v[j]; (c < ' ' || c > '~') && c != '\t' {
				return nil
			}
		}
		v = trimSpace(v)
		key, ok := canonicalKey(k)
		if !ok {
			return nil
		}
		switch key {
		case "Content-Length":
			if cl >= 0 || len(v) == 0 || len(v) > 18 {
				return nil
			}
			var n int64
			for j := 0; j < len(v); j++ {
				if !isDigit(v[j]) {
					return nil
				}
				n = n*10 + int64(v[j]-'0')
			}
			cl = n
		case "Transfer-Encoding":
			if chunked || !strings.EqualFold(v, "chunked") {
				return nil
			}
			chunked = true
			continue // net/http takes it out of the header
		case "Connection":
			if _, seen := h["Connection"]; seen || closing {
				return nil
			}
			switch {
			case strings.EqualFold(v, "close"):
				closing = true
				continue // net/http takes it out of the header
			case !strings.EqualFold(v, "keep-alive"):
				return nil
			}
		case "Trailer", "Pragma":
			return nil
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, v)
		} else {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[key] = vv
		}
	}
	a.resp = http.Response{
		Status:     status,
		StatusCode: code,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Close:      closing,
		Request:    req,
	}
	switch {
	case chunked && cl < 0:
		a.resp.ContentLength = -1
		a.resp.TransferEncoding = []string{"chunked"}
	case !chunked && cl >= 0:
		a.resp.ContentLength = cl
	default:
		// Both, or neither (a body the connection's close ends).
		return nil
	}
	return a
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// commonKeys are canonical names met in answers, to canonicalise a name
// sent in another case without allocating.
var commonKeys = []string{
	"Content-Type", "Content-Length", "Date", "Transfer-Encoding",
	"Connection", "Server", "Vary", "Keep-Alive", "Cache-Control",
	"Content-Encoding", "X-Content-Type-Options",
}

// canonicalKey returns k in canonical form, or false when it is not a
// token (net/http rejects it or keeps it as it is: readResponse leaves it
// to net/http either way).
func canonicalKey(k string) (string, bool) {
	canonical := true
	upper := true
	for j := 0; j < len(k); j++ {
		c := k[j]
		if !isTokenByte(c) {
			return "", false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return k, true
	}
	for _, ck := range commonKeys {
		if strings.EqualFold(ck, k) {
			return ck, true
		}
	}
	return textproto.CanonicalMIMEHeaderKey(k), true
}

// isTokenByte says whether c may be in a header name (RFC 9110 tchar).
func isTokenByte(c byte) bool { return tokenBytes[c] }

var tokenBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

// fixedBody is a body of a known length, read as net/http reads it: the
// last bytes come with io.EOF, a short one ends with io.ErrUnexpectedEOF.
type fixedBody struct {
	br      *bufio.Reader
	n       int64 // bytes left
	closing bool  // the connection closes after it

	mu             sync.Mutex
	sawEOF, closed bool
}

func (b *fixedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readLocked(p)
}

func (b *fixedBody) readLocked(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.sawEOF || b.n <= 0 {
		b.sawEOF = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF:
		b.sawEOF = true
		if b.n > 0 {
			err = io.ErrUnexpectedEOF
		}
	case err == nil && n > 0 && b.n == 0:
		b.sawEOF = true
		err = io.EOF
	}
	return n, err
}

// Close reads what is left of the body, as net/http's does, unless the
// connection closes after it.
func (b *fixedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var err error
	if !b.sawEOF && !b.closing {
		_, err = io.Copy(io.Discard, readerFunc(b.readLocked))
	}
	b.closed = true
	return err
}

// chunkedBody is a chunked body, read as net/http reads it: after the
// last chunk it reads the trailer section, up to and including its empty
// line, into the response's Trailer.
type chunkedBody struct {
	br   *bufio.Reader
	cr   io.Reader
	resp *http.Response

	mu             sync.Mutex
	sawEOF, closed bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readLocked(p)
}

func (b *chunkedBody) readLocked(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.sawEOF {
		return 0, io.EOF
	}
	n, err := b.cr.Read(p)
	if err == io.EOF {
		b.sawEOF = true
		if terr := b.readTrailer(); terr != nil {
			// No read may succeed after a broken trailer.
			err = terr
			b.sawEOF = false
			b.closed = true
		}
	}
	return n, err
}

var errTrailerEOF = errors.New("http: unexpected EOF reading trailer")

// readTrailer reads the trailer section as net/http does.
func (b *chunkedBody) readTrailer() error {
	buf, err := b.br.Peek(2)
	if len(buf) == 2 && buf[0] == '\r' && buf[1] == '\n' {
		_, _ = b.br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errTrailerEOF
	}
	if err != nil {
		return err
	}
	if !upcomingCRLFCRLF(b.br) {
		return errors.New("http: suspiciously long trailer after chunked body")
	}
	hdr, err := textproto.NewReader(b.br).ReadMIMEHeader()
	if err != nil {
		if err == io.EOF {
			return errTrailerEOF
		}
		return err
	}
	if b.resp.Trailer == nil {
		b.resp.Trailer = http.Header(hdr)
	} else {
		for k, vv := range hdr {
			b.resp.Trailer[k] = vv
		}
	}
	return nil
}

// upcomingCRLFCRLF says whether an empty line ends what br can buffer.
func upcomingCRLFCRLF(br *bufio.Reader) bool {
	for size := 4; ; size++ {
		buf, err := br.Peek(size)
		if bytes.HasSuffix(buf, crlfcrlf) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// Close reads what is left of the body and its trailer, as net/http's
// does.
func (b *chunkedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var err error
	if !b.sawEOF {
		_, err = io.Copy(io.Discard, readerFunc(b.readLocked))
	}
	b.closed = true
	return err
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
