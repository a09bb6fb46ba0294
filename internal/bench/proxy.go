package bench

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// BaselineProxy is the smallest reasonable fasthttp reverse proxy: it
// forwards every request unchanged to one upstream over keep-alive
// connections and passes the response back. A response with a length is
// relayed whole; one without (chunked NDJSON or SSE) is relayed as it
// arrives, flushing after every read so no event waits in a buffer. It is
// what sovra's serving path is measured against.
type BaselineProxy struct {
	upstream *fasthttp.HostClient
	server   *fasthttp.Server
}

// NewBaselineProxy returns a proxy to the HTTP server at target (host:port).
func NewBaselineProxy(target string) *BaselineProxy {
	p := &BaselineProxy{
		upstream: &fasthttp.HostClient{
			Addr:                     target,
			MaxConns:                 4096,
			MaxIdleConnDuration:      90 * time.Second,
			ReadBufferSize:           16 << 10,
			StreamResponseBody:       true,
			DisablePathNormalizing:   true,
			NoDefaultUserAgentHeader: true,
		},
	}
	p.server = &fasthttp.Server{
		Handler:               p.handle,
		Name:                  "baseline-proxy",
		ReadTimeout:           60 * time.Second,
		IdleTimeout:           120 * time.Second,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
	}
	return p
}

// Serve answers on ln until Shutdown.
func (p *BaselineProxy) Serve(ln net.Listener) error { return p.server.Serve(ln) }

// Shutdown stops the proxy, waiting for open requests.
func (p *BaselineProxy) Shutdown() error { return p.server.Shutdown() }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (p *BaselineProxy) handle(ctx *fasthttp.RequestCtx) {
	req := &ctx.Request
	req.Header.ResetConnectionClose()
	resp := fasthttp.AcquireResponse()
	if err := p.upstream.Do(req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		ctx.Error("upstream: "+err.Error(), fasthttp.StatusBadGateway)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	ctx.Response.Header.ResetConnectionClose()
	if resp.Header.ContentLength() >= 0 {
		// The client has read the whole body already; Body closes the
		// stream, which hands the upstream connection back to the pool.
		ctx.Response.SetBody(resp.Body())
		fasthttp.ReleaseResponse(resp)
		return
	}
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer fasthttp.ReleaseResponse(resp)
		if err := relay(w, resp.BodyStream()); err != nil {
			resp.SetConnectionClose() // the upstream connection is mid-body
		}
	})
}

// relay copies r to w, flushing after each read.
func relay(w *bufio.Writer, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if werr := w.Flush(); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
