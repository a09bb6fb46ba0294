package api

import (
	"errors"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/router"
)

// This file holds the checks against requests that a browser makes on a
// web page's behalf (cross-site request forgery, DNS rebinding), the way
// Ollama's server does them: an Origin that is not allowed is refused, and
// a node that listens on loopback answers only requests that name a
// loopback host.

// browserGuard refuses requests from origins that are not allowed and, on
// a loopback listener, requests for other hosts; it then lets CORS answer
// the preflights of allowed origins.
func (s *Server) browserGuard() fiber.Handler {
	c := cors.New(cors.Config{
		AllowOriginsFunc: s.originAllowed,
		AllowMethods:     "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS",
		ExposeHeaders: strings.Join([]string{fiber.HeaderXRequestID, fiber.HeaderRetryAfter, HeaderNode, HeaderReplica,
			HeaderQueueMs, HeaderRoute, HeaderAttempts}, ","),
	})
	return func(ctx *fiber.Ctx) error {
		// The host is looked at in place: nothing keeps it.
		if s.cfg.LoopbackOnly && !loopbackHost(utils.UnsafeString(ctx.Request().Host())) {
			return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "host_not_allowed",
				Message: "this node listens on loopback and answers only requests for a loopback host"}
		}
		if o := ctx.Get(fiber.HeaderOrigin); o != "" && !s.originAllowed(strings.ToLower(o)) && !s.dashboard(ctx.Path()) {
			return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "origin_not_allowed",
				Message: "requests from this origin are not allowed (see --allowed-origins)"}
		}
		return c(ctx)
	}
}

// dashboard reports whether path is the dashboard's, which checks the
// origin of its requests itself.
func (s *Server) dashboard(path string) bool {
	p := s.cfg.DashboardPath
	return p != "" && (path == p || strings.HasPrefix(path, p+"/"))
}

// loopbackHost reports whether a Host header names this machine's
// loopback: localhost, a name under .localhost or a loopback address. An
// absent Host (HTTP/1.0) is allowed.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// originAllowed reports whether a browser origin (lower case) may call
// the API: a loopback origin (http or https, any port) or one that matches
// a pattern of Config.AllowedOrigins.
func (s *Server) originAllowed(origin string) bool {
	if u, err := url.Parse(origin); err == nil && (u.Scheme == "http" || u.Scheme == "https") &&
		u.Path == "" && u.User == nil && loopbackHost(u.Host) && u.Host != "" {
		return true
	}
	for _, p := range s.cfg.AllowedOrigins {
		if originMatches(strings.ToLower(strings.TrimSpace(p)), origin) {
			return true
		}
	}
	return false
}

// originMatches matches an origin against a pattern that is an origin
// with at most one "*" (any run of characters), or "*" alone (any origin).
func originMatches(pattern, origin string) bool {
	pattern = strings.TrimSuffix(pattern, "/")
	prefix, suffix, wild := strings.Cut(pattern, "*")
	if !wild {
		return pattern == origin
	}
	return len(origin) >= len(prefix)+len(suffix) && strings.HasPrefix(origin, prefix) && strings.HasSuffix(origin, suffix)
}

// requireJSON refuses admin writes whose body is not JSON: a browser form
// can post text/plain across sites without a preflight, JSON it cannot.
func requireJSON(c *fiber.Ctx) error {
	switch c.Method() {
	case fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch, fiber.MethodDelete:
	default:
		return c.Next()
	}
	if len(c.Body()) == 0 && c.Request().Header.ContentLength() <= 0 {
		return c.Next()
	}
	if mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType)); err != nil || mt != fiber.MIMEApplicationJSON {
		return &Error{Status: http.StatusUnsupportedMediaType, Type: typeInvalid, Code: "unsupported_media_type",
			Message: "admin writes take a JSON body: set Content-Type: application/json"}
	}
	return c.Next()
}

// authError renders what the authentication middleware refused as OpenAI
// does: a missing or wrong key is 401 invalid_api_key.
func authError(err error) *Error {
	switch {
	case errors.Is(err, auth.ErrMissing):
		return &Error{Status: http.StatusUnauthorized, Type: typeInvalid, Code: "invalid_api_key",
			Message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."}
	case errors.Is(err, auth.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "insufficient_permissions",
			Message: "This key may not use this route."}
	case errors.Is(err, router.ErrModelForbidden):
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "model_not_allowed", Param: "model",
			Message: "This key may not use this model."}
	case errors.Is(err, auth.ErrJurisdictionForbidden):
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "jurisdiction_not_allowed",
			Message: "This key may not use these jurisdictions (" + HeaderJurisdiction + ")."}
	}
	return &Error{Status: http.StatusUnauthorized, Type: typeInvalid, Code: "invalid_api_key",
		Message: "Incorrect API key provided."}
}
