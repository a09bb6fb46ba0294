package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	}))
	defer ready.Close()
	unready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"status":"unready","reason":"no leader"}`))
	}))
	defer unready.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer secure.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "ready URL without a path", args: []string{"--addr", ready.URL}},
		{name: "ready host:port", args: []string{"--addr", ready.Listener.Addr().String()}},
		{name: "explicit path", args: []string{"--addr", ready.URL + "/healthz"}, code: 1, want: "404"},
		{name: "unready", args: []string{"--addr", unready.URL}, code: 1, want: "no leader"},
		{name: "https, certificate not verified", args: []string{"--addr", secure.URL}},
		{name: "nobody listening", args: []string{"--addr", closedAddr}, code: 1, want: "not healthy"},
		{name: "other scheme", args: []string{"--addr", "ftp://" + closedAddr}, code: 2, want: "host:port or an http(s) URL"},
		{name: "argument", args: []string{"extra"}, code: 2, want: "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sovra(t, cliEnv{}, append([]string{"healthcheck", "--timeout", "2s"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.err, tc.want) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to mention %q", r.code, tc.code, r.err, tc.want)
			}
		})
	}
}

func TestHealthcheckIsHidden(t *testing.T) {
	r := sovra(t, cliEnv{}, "--help").ok(t)
	if strings.Contains(r.out, "healthcheck") {
		t.Fatalf("healthcheck is listed in --help:\n%s", r.out)
	}
}
