package auth

import (
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestAuthenticate(t *testing.T) {
	a := New("admin-secret", NewStaticKeys(map[string]Principal{"tenant-secret": {KeyID: "k1", Role: RoleUser}}))
	cases := []struct {
		name, secret string
		want         Principal
		err          error
	}{
		{"management token", "admin-secret", Principal{KeyID: AdminKeyID, Role: RoleAdmin}, nil},
		{"api key", "tenant-secret", Principal{KeyID: "k1", Role: RoleUser}, nil},
		{"none", "", Principal{}, ErrMissing},
		{"wrong", "admin-secreT", Principal{}, ErrInvalid},
		{"prefix of the token", "admin", Principal{}, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.secret)
			if !reflect.DeepEqual(p, tc.want) || !errors.Is(err, tc.err) {
				t.Fatalf("got %+v, %v; want %+v, %v", p, err, tc.want, tc.err)
			}
			if err != nil && !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("%v is not ErrUnauthenticated", err)
			}
		})
	}
}

func TestNoTokenAdmitsNobody(t *testing.T) {
	if _, err := New("", nil).Authenticate("anything"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v", err)
	}
}

func TestNewToken(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 || a == b {
		t.Fatalf("tokens %q %q: %v", a, b, err)
	}
}

// TestRequire runs the middleware in front of a handler that echoes the
// principal it finds.
func TestRequire(t *testing.T) {
	a := New("admin-secret", NewStaticKeys(map[string]Principal{"tenant-secret": {KeyID: "k1", Role: RoleUser}}))
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		switch {
		case errors.Is(err, ErrUnauthenticated):
			return c.Status(401).SendString(err.Error())
		case errors.Is(err, ErrForbidden):
			return c.Status(403).SendString(err.Error())
		}
		return c.Status(500).SendString(err.Error())
	}})
	echo := func(c *fiber.Ctx) error {
		p, ok := FromCtx(c)
		q, ok2 := FromContext(c.UserContext())
		if !ok || !ok2 || !reflect.DeepEqual(p, q) {
			return errors.New("no principal")
		}
		return c.SendString(p.KeyID)
	}
	app.Use("/msg", a.Require(RoleUser, WithKeyHeader(HeaderAPIKey)))
	app.Get("/msg", a.Require(RoleUser), echo)
	app.Get("/user", a.Require(RoleUser), echo)
	app.Get("/admin", a.Require(RoleAdmin), echo)
	cases := []struct {
		name, path string
		header     map[string]string
		status     int
		body       string
	}{
		{"admin on an admin route", "/admin", map[string]string{"Authorization": "Bearer admin-secret"}, 200, AdminKeyID},
		{"lower-case scheme", "/admin", map[string]string{"Authorization": "bearer admin-secret"}, 200, AdminKeyID},
		{"admin on inference", "/user", map[string]string{"Authorization": "Bearer admin-secret"}, 200, AdminKeyID},
		{"tenant on inference", "/user", map[string]string{"Authorization": "Bearer tenant-secret"}, 200, "k1"},
		{"tenant on an admin route", "/admin", map[string]string{"Authorization": "Bearer tenant-secret"}, 403, ""},
		{"no credential", "/user", nil, 401, ""},
		{"basic auth", "/user", map[string]string{"Authorization": "Basic admin-secret"}, 401, ""},
		{"wrong token", "/admin", map[string]string{"Authorization": "Bearer nope"}, 401, ""},
		{"x-api-key where taken", "/msg", map[string]string{"x-api-key": "admin-secret"}, 200, AdminKeyID},
		{"x-api-key elsewhere", "/user", map[string]string{"x-api-key": "admin-secret"}, 401, ""},
		{"wrong bearer beats x-api-key", "/msg", map[string]string{"Authorization": "Bearer nope", "x-api-key": "admin-secret"}, 401, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := app.Test(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			n, _ := resp.Body.Read(buf)
			resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.body != "" && string(buf[:n]) != tc.body) {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, buf[:n], tc.status, tc.body)
			}
		})
	}
}
