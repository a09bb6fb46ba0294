package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

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

// readLimited reads r to its end, growing its buffer only as bytes arrive,
// and fails with a 413 past limit bytes. declared, when not
// negative, is the length the body must have.
func readLimited(r io.Reader, limit, declared int) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, int64(limit)+1))
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		return nil, invalidParam("", "could not read the request body: %s", err.Error())
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
