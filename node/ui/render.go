package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"mime"
	"path"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/sovra/sovra/client"
)

//go:embed templates/*.html static/*
var files embed.FS

// pageNames are the templates rendered inside the layout.
var pageNames = []string{"signin", "error", "overview", "deployment", "nodes", "node", "confirm", "keys", "audit"}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// asset is an embedded static file, served under a name that carries
// its hash so that it may be cached for good.
type asset struct {
	data  []byte
	ctype string
}

// assets maps served names to files; URL maps a file's name to its
// served path.
type assets struct {
	byName map[string]asset
	URL    map[string]string
}

func loadAssets() (assets, error) {
	as := assets{byName: map[string]asset{}, URL: map[string]string{}}
	entries, err := fs.ReadDir(files, "static")
	if err != nil {
		return as, err
	}
	for _, e := range entries {
		data, err := files.ReadFile("static/" + e.Name())
		if err != nil {
			return as, err
		}
		sum := sha256.Sum256(data)
		ext := path.Ext(e.Name())
		served := e.Name()[:len(e.Name())-len(ext)] + "." + hex.EncodeToString(sum[:6]) + ext
		as.byName[served] = asset{data: data, ctype: mime.TypeByExtension(ext)}
		as.URL[e.Name()] = Path + "/static/" + served
	}
	return as, nil
}

// static serves an embedded file: public, cacheable for good (its name
// changes with its content).
func (u *UI) static(c *fiber.Ctx) error {
	a, ok := u.assets.byName[c.Params("file")]
	if !ok {
		return c.Status(fiber.StatusNotFound).SendString("not found")
	}
	c.Set(fiber.HeaderContentType, a.ctype)
	c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	return c.Send(a.data)
}

// layout is what the layout template shows around a page.
type layout struct {
	Title string
	// Nav names the navigation entry of the page.
	Nav string
	// Who names the signed-in credential; CSRF is its session's token
	// (both empty on pages shown without a session).
	Who  string
	CSRF string
	// Live pages follow the state's changes; Tick ones also refresh
	// every refresh interval.
	Live  bool
	Tick  bool
	Index uint64
	// Rendered is when the page was rendered.
	Rendered time.Time
	Assets   map[string]string
	Page     any
}

// errorPage is the data of the error template.
type errorPage struct {
	Title   string
	Message string
}

// view is what a page handler hands back to be rendered.
type view struct {
	name  string
	title string
	nav   string
	tick  bool
	// still pages do not follow the state (a form being filled in).
	still bool
	data  any
}

// render renders a page shown without a session.
func (u *UI) render(c *fiber.Ctx, name string, data any) error {
	title := "Sign in"
	if e, ok := data.(errorPage); ok {
		title = e.Title
	}
	return u.write(c, name, layout{Title: title, Page: data, Assets: u.assets.URL, Rendered: u.cfg.Now()})
}

func (u *UI) write(c *fiber.Ctx, name string, l layout) error {
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", l); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(buf.Bytes())
}

// page serves a page of a signed-in operator: fn gathers the page's data
// from the admin API. An admin call that no longer accepts the session's
// credential (a revoked key) ends the session.
func (u *UI) page(fn func(*req) (view, error)) fiber.Handler {
	return u.withSession(func(r *req) error {
		index := u.cfg.Index()
		v, err := fn(r)
		if err != nil {
			return u.pageError(r, err)
		}
		if v.name == "" {
			return nil // fn answered itself (a redirect)
		}
		return u.write(r.c, v.name, layout{Title: v.title, Nav: v.nav, Who: r.s.who, CSRF: r.s.csrf, Live: !v.still, Tick: v.tick && !v.still,
			Index: index, Rendered: u.cfg.Now(), Assets: u.assets.URL, Page: v.data})
	})
}

// pageError renders an error of a page's admin calls.
func (u *UI) pageError(r *req, err error) error {
	var ce *client.Error
	switch {
	case errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrForbidden):
		u.sessions.remove(r.id)
		return u.toSignin(r.c)
	case errors.As(err, &ce) && ce.Status == fiber.StatusNotFound:
		return u.writeError(r, fiber.StatusNotFound, "Not found", ce.Message)
	case errors.As(err, &ce):
		return u.writeError(r, fiber.StatusServiceUnavailable, "The cluster did not answer", ce.Message)
	}
	u.cfg.Log.Warn("dashboard page failed", zap.Error(err))
	return u.writeError(r, fiber.StatusServiceUnavailable, "The cluster did not answer", "The node could not gather this page's data just now; it will try again when the state changes.")
}

func (u *UI) writeError(r *req, status int, title, msg string) error {
	return u.write(r.c.Status(status), "error", layout{Title: title, Who: r.s.who, CSRF: r.s.csrf, Live: true, Tick: true,
		Index: u.cfg.Index(), Rendered: u.cfg.Now(), Assets: u.assets.URL, Page: errorPage{Title: title, Message: msg}})
}
