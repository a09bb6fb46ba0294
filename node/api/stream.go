package api

import (
	"bufio"
	"context"
	"errors"
	"io"
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
	fctx.Response.SetBodyStream(&frameReader{
		s: s, conn: fctx.Conn(), fail: st.fail, info: info, fam: fam, start: info.start,
		pending: first, n: 1, frames: frames, result: result, cancel: cancel,
	}, -1)
	s.streams.Add(1)
	return nil
}

// frameReader is a stream's body as fasthttp reads it: fasthttp's server
// goroutine calls Read, writes what it returns as one chunk and flushes it,
// then calls Close. Read returns every frame already produced (so a fast
// backend does not cost a write per token) and waits only when none is.
// Reading the frames on the server's own goroutine, rather than through
// SetBodyStreamWriter's pipe and goroutine, saves a hand-off per flush.
type frameReader struct {
	s      *Server
	conn   net.Conn
	fail   func(*Error) []byte
	info   *reqInfo
	fam    family
	start  time.Time
	frames <-chan []byte
	result <-chan error
	cancel context.CancelFunc

	pending []byte // the rest of a frame not yet returned
	n       int    // frames taken
	ended   bool   // frames closed, the run's result taken
	eof     bool   // Read returned io.EOF: the whole stream was written
	err     error  // the run's result
}

func (r *frameReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 && !r.ended { // wait for one
		b, ok := <-r.frames
		r.takeFrame(b, ok)
	}
	n := 0
	for len(p) > n {
		if len(r.pending) > 0 {
			c := copy(p[n:], r.pending)
			r.pending = r.pending[c:]
			n += c
			continue
		}
		if r.ended {
			break
		}
		select {
		case b, ok := <-r.frames:
			r.takeFrame(b, ok)
			continue
		default:
		}
		break
	}
	if n == 0 {
		r.eof = true
		return 0, io.EOF
	}
	// Give a slow reader WriteTimeout per write rather than for the
	// whole stream, so long generations are not cut.
	if r.s.cfg.WriteTimeout > 0 && r.conn != nil {
		_ = r.conn.SetWriteDeadline(time.Now().Add(r.s.cfg.WriteTimeout))
	}
	return n, nil
}

// takeFrame takes a frame, or the end of the frames (ok false): then the
// run's result, and the in-band error frame when it failed.
func (r *frameReader) takeFrame(b []byte, ok bool) {
	if ok {
		r.pending = b
		r.n++
		return
	}
	r.ended = true
	r.err = <-r.result
	if r.err == nil {
		return
	}
	if ae := toAPIError(r.err); ae.Status != StatusClientClosed {
		r.pending = r.fail(&Error{Status: ae.Status, Type: ae.Type, Code: ae.Code, Message: ae.Message})
	}
}

// Close ends the stream: a stream not written to its end means the client
// is gone, which cancels the backend. It logs the request.
func (r *frameReader) Close() error {
	defer r.s.streams.Done()
	r.cancel()
	if !r.ended {
		for range r.frames { // let run finish
		}
		r.ended = true
		r.err = <-r.result
	}
	r.info.frames = r.n
	status := fiber.StatusOK
	switch {
	case !r.eof:
		status = StatusClientClosed
	case r.err != nil:
		status = toAPIError(r.err).Status
	}
	r.s.logRequest(r.info, r.fam, status, time.Since(r.start), r.err)
	return nil
}

// flush sends what is buffered, giving a slow reader WriteTimeout per write
// rather than for the whole stream, so long generations are not cut.
func (s *Server) flush(conn net.Conn, w *bufio.Writer) error {
	if s.cfg.WriteTimeout > 0 && conn != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	}
	return w.Flush()
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
	if ri.forwarded && c.Get(HeaderMaySendBack) != "" {
		ctx = router.ForwardedMaySendBack(ctx)
	} else if ri.forwarded {
		ctx = router.Forwarded(ctx)
	} else if p, ok := auth.FromCtx(c); ok {
		ctx = auth.NewContext(ctx, p) // for the peer it may be forwarded to
	}
	ctx, ri.decision = router.WithDecision(ctx)
	ctx, cancel := context.WithCancel(ctx)
	return ctx, cancel, nil
}
