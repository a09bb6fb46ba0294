package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/gofiber/fiber/v2"
)

// bodyTooLarge is the answer to a request body past limit bytes.
func bodyTooLarge(limit int) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: typeInvalid, Code: "request_too_large",
		Message: "The request body is larger than this server accepts (" + fmtBytes(limit) + ")."}
}

// readBody reads the request body once its sender is authenticated,
// before the handler runs. fasthttp hands
// it over as a stream (StreamRequestBody), so nothing is allocated from
// the length a client declares: the body is read as it arrives and
// refused once past BodyLimit. A refused body is left unread, so the
// connection is closed after the answer.
func (s *Server) readBody(c *fiber.Ctx) error {
	requestInfo(c).limits = s.cfg.jsonLimits()
	req := c.Request()
	stream := req.BodyStream()
	if stream == nil {
		return c.Next()
	}
	declared := req.Header.ContentLength()
	if declared > s.cfg.BodyLimit {
		c.Context().SetConnectionClose()
		return bodyTooLarge(s.cfg.BodyLimit)
	}
	body, err := readLimited(stream, s.cfg.BodyLimit, declared)
	if err != nil {
		c.Context().SetConnectionClose()
		return err
	}
	req.SetBodyRaw(body)
	return c.Next()
}

// smallBody is the most readLimited allocates from a declared length
// before the bytes arrive.
const smallBody = 64 << 10

// readLimited reads r to its end, growing its buffer only as bytes arrive
// (beyond a declared length of at most smallBody),
// and fails with a 413 past limit bytes. declared, when not
// negative, is the length the body must have.
func readLimited(r io.Reader, limit, declared int) ([]byte, error) {
	var buf bytes.Buffer
	if declared >= 0 && declared <= smallBody {
		// Room for the whole body and the read that finds its end, so
		// that a small body is read into one allocation.
		buf.Grow(declared + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(r, int64(limit)+1))
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		// The reader's error may quote what it could not parse.
		return nil, invalidParam("", "could not read the request body: it ended early or its chunked encoding is broken")
	case n > int64(limit):
		return nil, bodyTooLarge(limit)
	case declared >= 0 && n != int64(declared):
		return nil, invalidParam("", "the request body ended after %d of the %d bytes it declared", n, declared)
	}
	return buf.Bytes(), nil
}

// fmtBytes writes a byte count for people.
func fmtBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkFraming refuses a request whose headers give its body's length
// ambiguously: Content-Lengths that differ, a Content-Length beside a
// Transfer-Encoding, or a Transfer-Encoding other than one "chunked".
// fasthttp reads such a body by the last Content-Length, or as chunked
// for any Transfer-Encoding; a proxy in front may read it otherwise and
// take the rest for another request (request smuggling), so the request
// is refused and the connection closed, as RFC 9112 (6.3) asks.
func checkFraming(c *fiber.Ctx) error {
	lengths, encodings := framingHeaders(c.Request().Header.RawHeaders())
	var why string
	switch {
	case len(encodings) > 1 || len(encodings) == 1 && !asciiEqualFold([]byte(encodings[0]), "chunked"):
		why = "a Transfer-Encoding other than chunked"
	case len(encodings) == 1 && len(lengths) > 0:
		why = "both Content-Length and Transfer-Encoding"
	case len(lengths) > 1 && slices.ContainsFunc(lengths, func(l string) bool { return l != lengths[0] }):
		why = "Content-Length headers that differ"
	default:
		return c.Next()
	}
	c.Context().SetConnectionClose()
	return invalidParam("", "the request has %s: its body's length is ambiguous", why)
}

// framingHeaders are the values of the Content-Length and
// Transfer-Encoding headers of a request's raw header block, the names
// matched as fasthttp matches them (ASCII letters in any case).
func framingHeaders(raw []byte) (lengths, encodings []string) {
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		k, v = bytes.Trim(k, " \t\r"), bytes.Trim(v, " \t\r")
		switch {
		case asciiEqualFold(k, fiber.HeaderContentLength):
			lengths = append(lengths, string(v))
		case asciiEqualFold(k, fiber.HeaderTransferEncoding):
			encodings = append(encodings, string(v))
		}
	}
	return lengths, encodings
}

// asciiEqualFold reports whether b is name, ignoring the case of ASCII
// letters only.
func asciiEqualFold(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range b {
		if lower(b[i]) != lower(name[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// sendBody answers with body, which was appended to the response's own
// body buffer (taken with takeBody): fasthttp pools that buffer, where a
// body given to fiber's Send would be a new allocation every request.
func sendBody(c *fiber.Ctx, body []byte) {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SwapBody(body)
}

// takeBody is the response's body buffer, emptied, to append a body to.
func takeBody(c *fiber.Ctx) []byte { return c.Response().SwapBody(nil)[:0] }
