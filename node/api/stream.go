package api

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/router"
)

// stream describes one streamed response.
type stream struct {
	contentType string
	// run produces the frames, already encoded for the wire, through send.
	// It must stop when ctx ends; send fails once the client is gone.
	run func(ctx context.Context, send func([]byte) error) error
	// fail encodes the in-band frame that ends a stream failing after its
	// first byte.
	fail func(*Error) []byte
}

// framesBuffered bounds how far the backend may run ahead of a slow client.
const framesBuffered = 64

// serveStream runs st. Until the first frame is ready, a failure is an
// ordinary HTTP error with its status; after it, the stream ends with the
// in-band error frame and never with a normal end marker. A client that
// hangs up, or stops reading for longer than the write timeout, cancels the
// backend call.
func (s *Server) serveStream(c *fiber.Ctx, st stream) error {
	ctx, cancel, err := s.callContext(c)
	if err != nil {
		return err
	}
	fctx := c.Context()
	cancel = s.hangups.withHangup(ctx, fctx.Conn(), cancel)

	frames := make(chan []byte, framesBuffered)
	result := make(chan error, 1)
	send := func(b []byte) error {
		select {
		case frames <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	id := requestInfo(c).id
	go func() {
		result <- s.safely(id, func() error { return st.run(ctx, send) })
		close(frames)
	}()

	first, ok := <-frames
	if !ok {
		cancel()
		err := <-result
		if err == nil {
			err = errors.New("stream produced no data")
		}
		return err
	}

	info := requestInfo(c)
	info.ttft = time.Since(info.start)
	s.metrics.firstFrame(info, info.ttft)
	info.streaming = true
	info.noteKey(c)
	setRoutingHeaders(c, info.decision)
	setQuotaHeaders(c, info)
	c.Set(fiber.HeaderContentType, st.contentType)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	fam := familyOf(c.Path())
	start := info.start
	// fasthttp runs the writer on a goroutine of its own, which may still
	// be writing after the connection is gone and fctx was recycled: keep
	// the connection, not fctx.
	conn := fctx.Conn()
	s.streams.Add(1)
	fctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.streams.Done()
		defer cancel()
		var werr error
		info.frames, werr = s.pump(conn, w, first, frames)
		if werr != nil {
			cancel() // the client is gone: stop the backend
		}
		for range frames { // let run finish
		}
		err := <-result
		status := fiber.StatusOK
		switch {
		case werr != nil:
			status = StatusClientClosed
		case err != nil:
			ae := toAPIError(err)
			status = ae.Status
			if ae.Status == StatusClientClosed {
				break
			}
			s.write(conn, w, st.fail(&Error{Status: ae.Status, Type: ae.Type, Code: ae.Code, Message: ae.Message}))
		}
		s.logRequest(info, fam, status, time.Since(start), err)
	})
	return nil
}

// pump copies frames to the client, flushing once per burst so a fast
// backend does not cost one syscall per token. It returns how many frames
// it wrote.
func (s *Server) pump(conn net.Conn, w *bufio.Writer, first []byte, frames <-chan []byte) (int, error) {
	if _, err := w.Write(first); err != nil {
		return 0, err
	}
	n := 1
	for {
		select {
		case b, ok := <-frames:
			if !ok {
				return n, s.flush(conn, w)
			}
			if _, err := w.Write(b); err != nil {
				return n, err
			}
			n++
			continue
		default:
		}
		if err := s.flush(conn, w); err != nil {
			return n, err
		}
		b, ok := <-frames
		if !ok {
			return n, nil
		}
		if _, err := w.Write(b); err != nil {
			return n, err
		}
		n++
	}
}

// flush sends what is buffered, giving a slow reader WriteTimeout per write
// rather than for the whole stream, so long generations are not cut.
func (s *Server) flush(conn net.Conn, w *bufio.Writer) error {
	if s.cfg.WriteTimeout > 0 && conn != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	}
	return w.Flush()
}

func (s *Server) write(conn net.Conn, w *bufio.Writer, b []byte) {
	if _, err := w.Write(b); err == nil {
		_ = s.flush(conn, w)
	}
}

// sseFrame encodes one server-sent event carrying JSON data.
func sseFrame(event string, data []byte) []byte {
	n := len(data) + 8
	if event != "" {
		n += len(event) + 8
	}
	b := make([]byte, 0, n)
	if event != "" {
		b = append(b, "event: "...)
		b = append(b, event...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, '\n', '\n')
}

// ndjsonFrame encodes one line of newline-delimited JSON.
func ndjsonFrame(data []byte) []byte {
	return append(data, '\n')
}

var sseDone = []byte("data: [DONE]\n\n")

// requestContext returns the context of a non-streamed backend call: it ends
// when the client hangs up or the server stops hard.
func (s *Server) requestContext(c *fiber.Ctx) (context.Context, context.CancelFunc, error) {
	ctx, cancel, err := s.callContext(c)
	if err != nil {
		return nil, nil, err
	}
	return ctx, s.hangups.withHangup(ctx, c.Context().Conn(), cancel), nil
}

// callContext is the context of one backend call: it ends when the server
// stops hard, says whether another node forwarded the request, carries
// the client's routing constraints and collects the routing decision.
func (s *Server) callContext(c *fiber.Ctx) (context.Context, context.CancelFunc, error) {
	ri := requestInfo(c)
	meta, err := routingMeta(c, ri.forwarded)
	if err != nil {
		return nil, nil, err
	}
	if err := s.admitQuota(c, ri); err != nil {
		return nil, nil, err
	}
	ctx := router.WithMeta(s.base, meta)
	if ri.forwarded {
		ctx = router.Forwarded(ctx)
	} else if p, ok := auth.FromCtx(c); ok {
		ctx = auth.NewContext(ctx, p) // for the peer it may be forwarded to
	}
	ctx, ri.decision = router.WithDecision(ctx)
	ctx, cancel := context.WithCancel(ctx)
	return ctx, cancel, nil
}
