package api

import (
	"bufio"
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/modelshare"
	"github.com/sovra/sovra/node/quota"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/node/router/admit"
)

// Routing headers. A client may restrict where its request runs with
// HeaderJurisdiction; every inference answer says where it ran.
const (
	// HeaderJurisdiction lists the jurisdictions allowed to serve the
	// request, comma-separated (matched against the nodes' jurisdiction
	// label).
	HeaderJurisdiction = "Sovra-Jurisdiction"
	// HeaderNode is the id of the node whose Ollama served the request.
	HeaderNode = "Sovra-Node"
	// HeaderReplica is the replica that served it: tag@node.
	HeaderReplica = "Sovra-Replica"
	// HeaderQueueMs is how long it waited for a slot, in milliseconds.
	HeaderQueueMs = "Sovra-Queue-Ms"
	// HeaderRoute is why that replica was chosen.
	HeaderRoute = "Sovra-Route"
	// HeaderAttempts is how many replicas were tried.
	HeaderAttempts = "Sovra-Attempts"

	// headerClientKey carries the client's fairness key on forwarded
	// requests.
	headerClientKey = "Sovra-Client-Key"
	// HeaderMaySendBack on a forwarded request lets the node it is
	// forwarded to send it back unserved when its slots are taken and
	// another replica would answer sooner (router.ErrSentBack).
	HeaderMaySendBack = "Sovra-May-Send-Back"
	// HeaderErrorCode carries the error code of a refused forwarded
	// request back to the node that forwarded it (Ollama's error format
	// has no code).
	HeaderErrorCode = "Sovra-Error-Code"
)

// HeaderClientKey is what a node sets on the requests it forwards.
const HeaderClientKey = headerClientKey

// routingMeta is what the router needs of the request's client: its
// fairness key and the jurisdictions it allows.
func routingMeta(c *fiber.Ctx, forwarded bool) (router.Meta, error) {
	var m router.Meta
	p, ok := auth.FromCtx(c)
	if forwarded {
		m.Key = strings.Clone(c.Get(headerClientKey))
		if ok {
			m.Key = p.KeyID
		}
		return m, nil
	}
	if ok {
		m.Key = p.KeyID
	}
	var asked []string
	if h := c.Get(HeaderJurisdiction); h != "" {
		js, err := router.ParseJurisdictions(h)
		if err != nil {
			return m, &Error{Status: http.StatusBadRequest, Type: typeInvalid, Code: "invalid_jurisdiction",
				Message: HeaderJurisdiction + ": " + err.Error()}
		}
		asked = js
	}
	// A key's own jurisdictions bound the request's; the header can only
	// narrow them.
	js, err := p.Narrow(asked)
	if err != nil {
		return m, err
	}
	m.Jurisdictions = js
	if len(p.Models) > 0 {
		m.ModelAllowed = p.AllowsModel
	}
	return m, nil
}

// setRoutingHeaders says where the request ran.
func setRoutingHeaders(c *fiber.Ctx, d *router.Decision) {
	v := d.View()
	if v.Node == "" {
		return
	}
	// Set as they are (their names are canonical), from bytes that
	// fasthttp copies: no normalising and no new strings.
	h := &c.Response().Header
	h.SetCanonical(routingHeaderNames[0], utils.UnsafeBytes(v.Node))
	h.SetCanonical(routingHeaderNames[1], utils.UnsafeBytes(v.Replica))
	var num [32]byte
	h.SetCanonical(routingHeaderNames[2], strconv.AppendFloat(num[:0], float64(v.QueueWait.Microseconds())/1000, 'f', 3, 64))
	h.SetCanonical(routingHeaderNames[3], utils.UnsafeBytes(string(v.Reason)))
	h.SetCanonical(routingHeaderNames[4], strconv.AppendInt(num[:0], int64(v.Attempts), 10))
}

// routingHeaderNames are the names setRoutingHeaders sets, in its order.
var routingHeaderNames = [...][]byte{[]byte(HeaderNode), []byte(HeaderReplica), []byte(HeaderQueueMs), []byte(HeaderRoute), []byte(HeaderAttempts)}

// forwardRoutes mount the internal routes peers use: forwarded inference
// requests, served here and never forwarded again, and this node's load.
func (s *Server) forwardRoutes() {
	f := s.app.Group("/internal/v1/forward", s.requirePeer, s.readBody)
	f.Post("/api/chat", s.ollamaChat)
	f.Post("/api/generate", s.ollamaGenerate)
	f.Post("/api/embed", s.ollamaEmbed)
	f.Post("/api/show", s.ollamaShow)
	s.app.Get("/internal/v1/load", s.requirePeer, s.loadExchange)
	if reg := s.cfg.ModelRegistry; reg != nil {
		serve := func(c *fiber.Ctx) error {
			return reg.Handle(c, strings.TrimPrefix(c.Path(), modelshare.RoutePrefix))
		}
		s.app.Get(modelshare.RoutePrefix+"/v2/*", s.requirePeer, serve)
		s.app.Head(modelshare.RoutePrefix+"/v2/*", s.requirePeer, serve)
	}
}

// exchanger is a backend that reports its load to peers (*router.Router).
type exchanger interface {
	Exchange(after uint64) router.Exchange
}

// LoadFeed streams this node's load to a peer (*load.Feed): frames, each
// one line, through send until ctx ends or send fails.
type LoadFeed interface {
	Watch(ctx context.Context, peer string, send func([]byte) error) error
}

// loadExchange answers this node's load once, or with ?watch=1 streams
// it: one frame (a LoadExchange) per line for as long as the peer reads.
func (s *Server) loadExchange(c *fiber.Ctx) error {
	if c.Query("watch") != "" {
		return s.watchLoad(c)
	}
	ex, ok := s.be.(exchanger)
	if !ok {
		return fiber.ErrNotFound
	}
	after, err := strconv.ParseUint(c.Query("after", "0"), 10, 64)
	if err != nil {
		return invalidParam("after", "after must be a sequence number")
	}
	out := LoadExchange{Exchange: ex.Exchange(after)}
	if s.cfg.Quota != nil {
		r := s.cfg.Quota.Report()
		out.Quota = &r
	}
	return c.JSON(out)
}

// watchLoad streams the load feed to the peer that asks. The stream ends
// when the server starts shutting down, so it never holds a shutdown up.
func (s *Server) watchLoad(c *fiber.Ctx) error {
	feed := s.cfg.LoadFeed
	if feed == nil {
		return fiber.ErrNotFound
	}
	peer, err := s.cfg.PeerID(c.Context().TLSConnectionState())
	if err != nil {
		return err // requirePeer let it through: cannot happen
	}
	conn := c.Context().Conn()
	c.Set(fiber.HeaderContentType, "application/x-ndjson")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	s.streams.Add(1)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.streams.Done()
		_ = feed.Watch(s.closing, peer, func(b []byte) error {
			if _, err := w.Write(b); err != nil {
				return err
			}
			return s.flush(conn, w)
		})
	})
	return nil
}

// LoadExchange is the answer of /internal/v1/load: the router's exchange
// and, when quotas are enforced, this node's usage by key.
type LoadExchange struct {
	router.Exchange
	Quota *quota.Report `json:"quota,omitempty"`
}

// requirePeer admits only other nodes of the cluster: a TLS client
// certificate of the cluster CA (Config.PeerID). The request is then
// marked as forwarded.
func (s *Server) requirePeer(c *fiber.Ctx) error {
	if s.cfg.PeerID == nil {
		return fiber.ErrNotFound
	}
	if _, err := s.cfg.PeerID(c.Context().TLSConnectionState()); err != nil {
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "peer_certificate_required",
			Message: "internal routes need a client certificate of the cluster CA"}
	}
	// The forwarding node authenticated the client; its principal is
	// trusted here, behind the cluster certificate, and nowhere else.
	if h := c.Get(auth.HeaderPrincipal); h != "" {
		p, err := auth.DecodePrincipal(h)
		if err != nil {
			return invalidParam("", "%s: %v", auth.HeaderPrincipal, err)
		}
		auth.SetPrincipal(c, p)
	}
	requestInfo(c).forwarded = true
	return c.Next()
}

// routingError maps what admission control and routing refuse: a client
// over its share of the queue gets 429, a saturated model 503, both with
// Retry-After; a residency nobody can satisfy is the request's fault.
func routingError(err error) *Error {
	var re *admit.RejectError
	if errors.As(err, &re) {
		retry := retrySeconds(re.RetryAfter)
		if errors.Is(err, admit.ErrKeyOverShare) {
			return &Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded",
				Message: re.Error(), RetryAfter: retry}
		}
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "server_overloaded",
			Message: re.Error() + "; retry shortly", RetryAfter: retry}
	}
	var res *router.ResidencyError
	switch {
	case errors.Is(err, router.ErrSentBack):
		// Only ever to the peer that forwarded the request, which routes
		// it again on reading the code.
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: router.SentBackCode,
			Message: err.Error()}
	case errors.As(err, &res) && res.NotReady:
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "no_ready_replica_in_jurisdiction",
			Message: res.Error() + "; retry shortly", RetryAfter: 5}
	case errors.As(err, &res):
		return &Error{Status: http.StatusBadRequest, Type: typeInvalid, Code: "residency_unsatisfiable",
			Message: res.Error()}
	case errors.Is(err, backend.ErrRateLimited):
		return &Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded",
			Message: "Too many requests from this client for the model; retry shortly. (" + err.Error() + ")", RetryAfter: 1}
	}
	return nil
}

// replicaLister is a backend that shows what it routes by (*router.Router).
type replicaLister interface {
	Replicas() []router.ReplicaView
	PolicyName() string
}

// routingView answers GET /admin/v1/routing: this node's view of every
// ready replica (load, report age, health, breaker), as it routes by it.
func (s *Server) routingView(c *fiber.Ctx) error {
	rl, ok := s.be.(replicaLister)
	if !ok {
		return fiber.ErrNotFound
	}
	reps := rl.Replicas()
	if reps == nil {
		reps = []router.ReplicaView{}
	}
	return c.JSON(fiber.Map{"policy": rl.PolicyName(), "replicas": reps})
}

// peerRefusal gives a client the code and Retry-After with which the
// replica's node refused the request, when it came over a forward: busy
// and rate-limit answers lose their code in Ollama's error format.
func peerRefusal(ae *Error, d *router.Decision) *Error {
	code, retry := d.PeerError()
	if code == "" || (ae.Code != "backend_overloaded" && ae.Code != "rate_limit_exceeded") {
		return ae
	}
	cp := *ae
	cp.Code = code
	if retry > 0 {
		cp.RetryAfter = retrySeconds(retry)
	}
	return &cp
}

// retrySeconds is a Retry-After in whole seconds, rounded up, at least 1.
func retrySeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }
