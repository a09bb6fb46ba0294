package auth

import (
	"context"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// HeaderAPIKey is where Anthropic clients send their key.
const HeaderAPIKey = "X-Api-Key"

// Option adjusts a middleware made by Require.
type Option func(*options)

type options struct {
	keyHeader string
	anonymous bool
}

// AnonymousKeyID is the key id of a request admitted without a
// credential (see AllowAnonymous).
const AnonymousKeyID = "anonymous"

// AllowAnonymous admits a request that carries no credential at all as an
// inference principal with key id AnonymousKeyID. A credential that is
// present is still checked (a wrong one is refused, a key keeps its
// limits). It is the --auth=off escape hatch for trusted networks.
func AllowAnonymous() Option { return func(o *options) { o.anonymous = true } }

// WithKeyHeader also takes the credential from header name when the
// request has no Authorization header (x-api-key for Anthropic clients).
func WithKeyHeader(name string) Option { return func(o *options) { o.keyHeader = name } }

type localsKey struct{}

type ctxKey struct{}

// Require is the authentication middleware: it admits a request whose
// credential belongs to a principal that may use routes needing role
// need, stores the principal in the request (see FromCtx and
// FromContext) and returns ErrMissing, ErrInvalid or ErrForbidden
// otherwise, for the caller's error handler to render. A request that an
// earlier Require admitted is only checked for its role.
func (a *Authenticator) Require(need Role, opts ...Option) fiber.Handler {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return func(c *fiber.Ctx) error {
		p, ok := FromCtx(c)
		if !ok {
			cred := credential(c, o.keyHeader)
			var err error
			switch {
			case cred == "" && o.anonymous && c.Get(fiber.HeaderAuthorization) == "":
				p = Principal{KeyID: AnonymousKeyID, Role: RoleInference}
			default:
				if p, err = a.Authenticate(cred); err != nil {
					return err
				}
			}
			SetPrincipal(c, p)
		}
		if !p.Role.allows(need) {
			return ErrForbidden
		}
		return c.Next()
	}
}

// credential is the request's bearer token or, without an Authorization
// header, the value of keyHeader when one is named.
func credential(c *fiber.Ctx, keyHeader string) string {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ""
		}
		return strings.TrimSpace(tok)
	}
	if keyHeader != "" {
		return c.Get(keyHeader)
	}
	return ""
}

// FromCtx is the principal Require stored in the request.
func FromCtx(c *fiber.Ctx) (Principal, bool) {
	p, ok := c.Locals(localsKey{}).(Principal)
	return p, ok
}

// FromContext is the principal of the request whose user context ctx is.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
