package ui

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/node/auth"
)

// Cookies of the dashboard. The session cookie holds only the session's
// random id; the sign-in cookie a token the sign-in form must echo, so
// that no other site can sign a browser in.
const (
	sessionCookie = "sovra_session"
	signinCookie  = "sovra_signin"
	// maxForm bounds the body of a dashboard form.
	maxForm = 16 << 10
	// csrfField and csrfHeader carry a session's CSRF token.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// session is the request's live session, with its id.
func (u *UI) session(c *fiber.Ctx) (string, *session, bool) {
	id := c.Cookies(sessionCookie)
	ss, ok := u.sessions.get(id)
	return id, ss, ok
}

// req is a dashboard request of a signed-in operator.
type req struct {
	c   *fiber.Ctx
	id  string
	s   *session
	ac  *client.Client
	ctx context.Context
}

// withSession runs h for a request with a live session; others are sent
// to sign in (pages) or refused (everything else).
func (u *UI) withSession(h func(*req) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, ss, ok := u.session(c)
		if !ok {
			if c.Method() == fiber.MethodGet && c.Path() != Path+"/events" {
				return u.toSignin(c)
			}
			return u.render(c.Status(fiber.StatusUnauthorized), "error", errorPage{Title: "Signed out",
				Message: "Your session has ended. Sign in again."})
		}
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		ctx = withOrigin(ctx, origin{remote: c.Context().RemoteAddr(), host: string(c.Request().Host())})
		return h(&req{c: c, id: id, s: ss, ac: u.adminClient(ss.credential), ctx: ctx})
	}
}

// csrf refuses a request whose CSRF token (form field or header) is not
// its session's.
func (u *UI) csrf(h func(*req) error) func(*req) error {
	return func(r *req) error {
		tok := r.c.Get(csrfHeader)
		if tok == "" {
			form, err := readForm(r.c)
			if err != nil {
				return u.render(r.c.Status(fiber.StatusBadRequest), "error", errorPage{Title: "Bad request", Message: err.Error()})
			}
			tok = form.Get(csrfField)
		}
		if !tokenEqual(tok, r.s.csrf) {
			return u.forbidden(r.c, "This form is out of date or did not come from the dashboard. Go back, reload the page and try again.")
		}
		return h(r)
	}
}

// toSignin sends the browser to the sign-in page, to come back here.
func (u *UI) toSignin(c *fiber.Ctx) error {
	next := string(c.Request().URI().RequestURI())
	target := Path + "/signin"
	if safeNext(next) != Path+"/" {
		target += "?next=" + url.QueryEscape(next)
	}
	return c.Redirect(target, fiber.StatusSeeOther)
}

// safeNext is where to go after signing in: a dashboard path, never
// another site.
func safeNext(next string) string {
	p, err := url.Parse(next)
	if err != nil || p.Scheme != "" || p.Host != "" || p.User != nil || strings.ContainsAny(next, "\\\r\n") ||
		strings.HasPrefix(next, "//") || !(p.Path == Path || strings.HasPrefix(p.Path, Path+"/")) ||
		strings.HasPrefix(p.Path, Path+"/signin") || strings.HasPrefix(p.Path, Path+"/events") || strings.HasPrefix(p.Path, Path+"/static/") {
		return Path + "/"
	}
	return p.RequestURI()
}

// signinView is the sign-in page's data.
type signinView struct {
	Token   string
	Next    string
	Error   string
	Notice  string
	Retry   int
	Invalid bool
}

func (u *UI) signinPage(c *fiber.Ctx) error {
	if _, _, ok := u.session(c); ok {
		return c.Redirect(safeNext(c.Query("next")), fiber.StatusSeeOther)
	}
	v := signinView{Next: safeNext(c.Query("next"))}
	if c.Query("signedout") != "" {
		v.Notice = "You have signed out."
	}
	return u.showSignin(c, fiber.StatusOK, v)
}

// showSignin renders the sign-in form with a fresh form token.
func (u *UI) showSignin(c *fiber.Ctx, status int, v signinView) error {
	tok, err := newSecret()
	if err != nil {
		return err
	}
	v.Token = tok
	c.Cookie(&fiber.Cookie{Name: signinCookie, Value: tok, Path: Path + "/signin", HTTPOnly: true,
		Secure: u.cfg.Secure, SameSite: fiber.CookieSameSiteStrictMode, MaxAge: 3600})
	return u.render(c.Status(status), "signin", v)
}

// signin checks the credential of the sign-in form with the admin API's
// own authentication (an admin call made with it) and starts a session.
func (u *UI) signin(c *fiber.Ctx) error {
	form, err := readForm(c)
	if err != nil {
		return u.showSignin(c, fiber.StatusBadRequest, signinView{Error: err.Error(), Next: Path + "/"})
	}
	v := signinView{Next: safeNext(form.Get("next"))}
	if !tokenEqual(form.Get(csrfField), c.Cookies(signinCookie)) {
		v.Error = "The sign-in form had expired. Please try again."
		return u.showSignin(c, fiber.StatusForbidden, v)
	}
	if w := u.fails.wait(c.IP()); w > 0 {
		secs := int((w + time.Second - 1) / time.Second)
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(secs))
		v.Error, v.Retry = "Too many failed sign-ins from your address. Wait "+strconv.Itoa(secs)+" s and try again.", secs
		return u.showSignin(c, fiber.StatusTooManyRequests, v)
	}
	cred := strings.TrimSpace(form.Get("credential"))
	if cred == "" {
		v.Error, v.Invalid = "Enter the management token or an admin API key.", true
		return u.showSignin(c, fiber.StatusBadRequest, v)
	}
	if status, msg := u.checkCredential(c, cred); msg != "" {
		v.Error, v.Invalid = msg, true
		return u.showSignin(c, status, v)
	}
	return u.startSession(c, cred, v.Next)
}

// checkCredential asks the admin API whether cred is an admin
// credential; it returns the status and message of a refusal.
func (u *UI) checkCredential(c *fiber.Ctx, cred string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	ctx = withOrigin(ctx, origin{remote: c.Context().RemoteAddr(), host: string(c.Request().Host())})
	_, err := u.adminClient(cred).ClusterStatus(ctx)
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, client.ErrUnauthorized):
		u.fails.fail(c.IP())
		return fiber.StatusUnauthorized, "That is not a valid credential."
	case errors.Is(err, client.ErrForbidden):
		u.fails.fail(c.IP())
		return fiber.StatusForbidden, "That credential may not administer the cluster: sign in with the management token or an admin key."
	}
	u.cfg.Log.Warn("could not check a dashboard sign-in", zap.Error(err))
	return fiber.StatusServiceUnavailable, "The node could not check the credential just now. Try again."
}

// startSession signs the browser in with cred and sends it on to next.
func (u *UI) startSession(c *fiber.Ctx, cred, next string) error {
	if old := c.Cookies(sessionCookie); old != "" {
		u.sessions.remove(old)
	}
	id, _, err := u.sessions.create(cred, describe(cred))
	if err != nil {
		return err
	}
	c.Cookie(&fiber.Cookie{Name: sessionCookie, Value: id, Path: Path, HTTPOnly: true, Secure: u.cfg.Secure,
		SameSite: fiber.CookieSameSiteStrictMode})
	c.Cookie(&fiber.Cookie{Name: signinCookie, Path: Path + "/signin", HTTPOnly: true, Secure: u.cfg.Secure,
		SameSite: fiber.CookieSameSiteStrictMode, MaxAge: -1})
	return c.Redirect(next, fiber.StatusSeeOther)
}

// describe names a credential for display without revealing it: an API
// key by its visible prefix, anything else as the management token.
func describe(cred string) string {
	if strings.HasPrefix(cred, auth.KeyPrefix) && len(cred) > len(auth.KeyPrefix)+8 {
		return cred[:len(auth.KeyPrefix)+8] + "…"
	}
	return "management token"
}

func (u *UI) signout(r *req) error {
	u.sessions.remove(r.id)
	r.c.Cookie(&fiber.Cookie{Name: sessionCookie, Path: Path, HTTPOnly: true, Secure: u.cfg.Secure,
		SameSite: fiber.CookieSameSiteStrictMode, MaxAge: -1})
	return r.c.Redirect(Path+"/signin?signedout=1", fiber.StatusSeeOther)
}

// readForm reads a URL-encoded form body of at most maxForm bytes.
func readForm(c *fiber.Ctx) (url.Values, error) {
	if v, ok := c.Locals(formKey{}).(url.Values); ok {
		return v, nil
	}
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEApplicationForm {
		return nil, errors.New("this form must be sent as application/x-www-form-urlencoded")
	}
	var body []byte
	if s := c.Request().BodyStream(); s != nil {
		body, err = io.ReadAll(io.LimitReader(s, maxForm+1))
		if err != nil {
			return nil, errors.New("could not read the form")
		}
		c.Request().SetBodyRaw(body)
	} else {
		body = c.Body()
	}
	if len(body) > maxForm {
		c.Context().SetConnectionClose()
		return nil, errors.New("the form is too large")
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errors.New("the form is malformed")
	}
	c.Locals(formKey{}, v)
	return v, nil
}

type formKey struct{}
