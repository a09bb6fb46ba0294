package ui

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Live updates: GET /ui/events is a stream of server-sent events. The
// stream sends "change" with the state's index soon after each change of
// the replicated state (changes that come in a burst are sent once), and
// "tick" every refresh interval; the page's script fetches the page again
// on each and swaps the parts that changed. The stream ends with
// "signout" when its session does, and by itself after StreamLife (the
// browser then opens another, which checks the session again).

// coalesce is how long a stream waits after a change for the changes
// that follow it, before it sends one event for all.
const coalesce = 150 * time.Millisecond

// writeWait bounds each write of a stream: a client that stops reading
// is cut off (it replaces the server's write deadline, which would end a
// healthy stream too).
const writeWait = 30 * time.Second

func (u *UI) events(r *req) error {
	if !u.openStream() {
		return r.c.Status(fiber.StatusServiceUnavailable).SendString("too many live streams")
	}
	if !u.sessions.openStream(r.s, maxStreamsPerSession) {
		u.closeStream()
		return r.c.Status(fiber.StatusTooManyRequests).SendString("too many live streams for this session")
	}
	c := r.c
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no")
	id, ss, conn := r.id, r.s, c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer u.closeStream()
		defer u.sessions.closeStream(ss)
		u.stream(deadlineWriter{w: w, conn: conn}, func() bool { return u.sessions.alive(id, ss) })
	})
	return nil
}

// stream writes events to w until the client goes, the session ends
// (alive turns false), the stream has lived StreamLife or the dashboard
// closes.
func (u *UI) stream(w flusher, alive func() bool) {
	life := time.NewTimer(u.cfg.StreamLife)
	defer life.Stop()
	tick := time.NewTicker(u.cfg.Refresh)
	defer tick.Stop()
	// The channel is taken before the index is read, so that no change
	// falls between the two unseen.
	changed := u.cfg.Changed()
	if !send(w, "retry: 2000\nevent: hello\ndata: %d\n\n", u.cfg.Index()) {
		return
	}
	for {
		event := "change"
		select {
		case <-u.done:
			return
		case <-life.C:
			return
		case <-tick.C:
			event = "tick"
		case <-changed:
			if !u.settle() {
				return
			}
		}
		changed = u.cfg.Changed()
		if !alive() {
			send(w, "event: signout\ndata: 0\n\n")
			return
		}
		if !send(w, "event: %s\ndata: %d\n\n", event, u.cfg.Index()) {
			return
		}
	}
}

// settle waits for the changes that follow one in a burst; false: the
// dashboard closed meanwhile.
func (u *UI) settle() bool {
	t := time.NewTimer(coalesce)
	defer t.Stop()
	for {
		changed := u.cfg.Changed()
		select {
		case <-u.done:
			return false
		case <-t.C:
			return true
		case <-changed:
		}
	}
}

// flusher is a buffered writer of a stream.
type flusher interface {
	io.Writer
	Flush() error
}

// deadlineWriter gives each flush of a stream writeWait.
type deadlineWriter struct {
	w    *bufio.Writer
	conn net.Conn
}

func (d deadlineWriter) Write(p []byte) (int, error) { return d.w.Write(p) }

func (d deadlineWriter) Flush() error {
	_ = d.conn.SetWriteDeadline(time.Now().Add(writeWait))
	return d.w.Flush()
}

// send writes one event and flushes it; false: the client is gone.
func send(w flusher, format string, args ...any) bool {
	if _, err := fmt.Fprintf(w, format, args...); err != nil {
		return false
	}
	return w.Flush() == nil
}

func (u *UI) openStream() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed || u.streams >= maxStreams {
		return false
	}
	u.streams++
	return true
}

func (u *UI) closeStream() {
	u.mu.Lock()
	u.streams--
	u.mu.Unlock()
}
