package api

import (
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/quota"
	"github.com/sovra/sovra/node/router"
)

// reqInfo is what the request log says of one request. Handlers fill in the
// model and token counts; prompt and completion text are never logged.
type reqInfo struct {
	id               string
	method           string
	path             string
	model            string
	start            time.Time
	promptTokens     int
	completionTokens int
	streaming        bool
	// forwarded is set on requests another node forwarded here.
	forwarded bool
	// inProcess is set on requests made inside the node (InProcess).
	inProcess bool
	// remote is the client's address; keyID the id of the key (or the
	// management token) the request was admitted with, never the secret.
	remote net.Addr
	keyID  string
	// decision is what the router did with the request.
	decision *router.Decision
	// quota is the request's admission against its key's limits and
	// quotaStatus the key's standing (nil: the key has no limits).
	quota       *quota.Ticket
	quotaStatus *quota.Status
	// ttft is the time to a streamed answer's first frame.
	ttft time.Duration
	// frames counts the frames a streamed response sent.
	frames int
	// limits bound the JSON body's shape (set before the handler runs).
	limits jsonLimits

	// metrics, when set, counts the request in flight under flightLabel
	// while inFlight; setModel moves it to its model's label.
	metrics     *metrics
	flightLabel string
	inFlight    bool
}

const infoKey = "sovra.req"

// noteKey records the id of the key the request was admitted with.
func (ri *reqInfo) noteKey(c *fiber.Ctx) {
	if p, ok := auth.FromCtx(c); ok {
		ri.keyID = p.KeyID
	}
}

// count records the token counts of a final message.
func (ri *reqInfo) count(m api.Metrics, final bool) {
	if final {
		ri.promptTokens, ri.completionTokens = m.PromptEvalCount, m.EvalCount
	}
}

func requestInfo(c *fiber.Ctx) *reqInfo {
	if ri, ok := c.Locals(infoKey).(*reqInfo); ok {
		return ri
	}
	ri := &reqInfo{start: time.Now()}
	c.Locals(infoKey, ri)
	return ri
}

// observe gives each request an id, and logs it and records its metrics when
// it ends; streamed responses are logged and recorded by serveStream when the
// stream ends.
func (s *Server) observe(c *fiber.Ctx) error {
	s.fresh.used(c.Context().Conn())
	ri := requestInfo(c)
	s.metrics.begin(ri)
	ri.id = strings.Clone(c.Get(fiber.HeaderXRequestID))
	if ri.id == "" || len(ri.id) > 128 {
		ri.id = s.ids.next("req-")
	}
	ri.method = strings.Clone(c.Method())
	ri.path = strings.Clone(c.Path())
	ri.remote = c.Context().RemoteAddr() // a string only when logged
	ri.inProcess, _ = c.Context().UserValue(inProcessKey{}).(bool)
	c.Set(fiber.HeaderXRequestID, ri.id)
	err := c.Next()
	if !ri.streaming { // serveStream noted it before its writer started
		ri.noteKey(c)
	}
	if !isModelNotFound(err) { // no replica of a model that is not served
		setRoutingHeaders(c, ri.decision)
	}
	setQuotaHeaders(c, ri)
	if err != nil {
		if herr := s.handleError(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	if ri.streaming {
		return nil
	}
	// The response is written after this returns: give that write, not the
	// generation before it, the write timeout. A deadline left by an
	// earlier response on this connection is replaced here too.
	if s.cfg.WriteTimeout > 0 {
		_ = c.Context().Conn().SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	}
	status := c.Response().StatusCode()
	if err != nil {
		status = toAPIError(err).Status
	}
	s.logRequest(ri, familyOf(ri.path), status, time.Since(ri.start), err)
	return nil
}

// logRequest logs a request that has ended and records it in the metrics.
func (s *Server) logRequest(ri *reqInfo, _ family, status int, latency time.Duration, err error) {
	ri.settleQuota()
	s.recordUsage(ri, status)
	s.metrics.end(ri, status, latency)
	level := requestLevel(ri.path, status)
	if ri.inProcess && level < zapcore.WarnLevel {
		level = zapcore.DebugLevel
	}
	ce := s.log.Check(level, "request")
	if ce == nil { // the level is off: build nothing
		return
	}
	fields := []zap.Field{
		zap.String("id", ri.id),
		zap.String("method", ri.method),
		zap.String("path", ri.path),
		zap.Int("status", status),
		zap.Duration("latency", latency),
		zap.Stringer("client", ri.remote),
	}
	if ri.keyID != "" {
		fields = append(fields, zap.String("key_id", ri.keyID))
	}
	if ri.model != "" {
		fields = append(fields, zap.String("model", ri.model))
	}
	if ri.promptTokens > 0 || ri.completionTokens > 0 {
		fields = append(fields, zap.Int("prompt_tokens", ri.promptTokens), zap.Int("completion_tokens", ri.completionTokens))
	}
	if ri.streaming {
		fields = append(fields, zap.Bool("stream", true))
	}
	if err != nil {
		fields = append(fields, zap.String("error", err.Error()))
	}
	ce.Write(fields...)
}

// requestLevel is the level of a request's log line: traffic between
// nodes (load exchanges, heartbeats, forwards, which the forwarding node
// logs itself) is routine and logs at debug; a server error elsewhere is a
// warning.
func requestLevel(path string, status int) zapcore.Level {
	switch {
	case strings.HasPrefix(path, "/internal/"):
		return zapcore.DebugLevel
	case status >= 500:
		return zapcore.WarnLevel
	}
	return zapcore.InfoLevel
}
