package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
)

// fakeAPI answers every request with status and body, and records the
// requests.
func fakeAPI(t *testing.T, status int, hdr map[string]string, body string) (*client.Client, *[]*http.Request) {
	t.Helper()
	var seen []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r)
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL, client.WithToken("secret"), client.WithTimeout(3*time.Second)), &seen
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
		not    error
		code   string
		retry  time.Duration
	}{
		{"no leader", 503, `{"error":{"message":"cluster: no leader","type":"service_unavailable_error","param":null,"code":"no_leader"}}`, client.ErrNoLeader, client.ErrIndeterminate, "no_leader", time.Second},
		{"indeterminate", 504, `{"error":{"message":"outcome unknown","type":"server_error","param":null,"code":"indeterminate"}}`, client.ErrIndeterminate, client.ErrNoLeader, "indeterminate", 0},
		{"rate limited", 429, `{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}`, client.ErrRateLimited, client.ErrBadRequest, "rate_limit_exceeded", time.Second},
		{"not found", 404, `{"error":{"message":"no deployment x","type":"invalid_request_error","param":"name","code":"not_found"}}`, client.ErrNotFound, client.ErrConflict, "not_found", 0},
		{"conflict", 409, `{"error":{"message":"exists","type":"invalid_request_error","param":null,"code":"conflict"}}`, client.ErrConflict, client.ErrNotFound, "conflict", 0},
		{"not the API's body", 502, `<html>bad gateway</html>`, nil, client.ErrUnavailable, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.retry > 0 {
				hdr["Retry-After"] = "1"
			}
			cl, _ := fakeAPI(t, tc.status, hdr, tc.body)
			_, err := cl.Deployment(context.Background(), "x")
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != tc.status || ce.Code != tc.code || ce.RetryAfter != tc.retry || ce.Message == "" {
				t.Fatalf("error %#v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("%v is not %v", err, tc.want)
			}
			if errors.Is(err, tc.not) {
				t.Fatalf("%v is %v", err, tc.not)
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	cl, seen := fakeAPI(t, 200, nil, `{"name":"x"}`)
	ctx := context.Background()
	for range 2 {
		if _, err := cl.ScaleDeployment(ctx, "x", 2); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.ScaleDeployment(client.WithIdempotencyKey(ctx, "mine"), "x", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Deployment(client.Stale(ctx), "x"); err != nil {
		t.Fatal(err)
	}
	r := *seen
	k1, k2 := r[0].Header.Get("Idempotency-Key"), r[1].Header.Get("Idempotency-Key")
	if k1 == "" || k1 == k2 || r[2].Header.Get("Idempotency-Key") != "mine" {
		t.Fatalf("idempotency keys %q %q %q", k1, k2, r[2].Header.Get("Idempotency-Key"))
	}
	if r[0].URL.Path != "/admin/v1/deployments/x/scale" || r[0].Header.Get("Content-Type") != "application/json" ||
		r[0].Header.Get("Authorization") != "Bearer secret" || r[0].URL.Query().Get("timeout") != "3s" {
		t.Fatalf("scale request %s %v", r[0].URL, r[0].Header)
	}
	if r[3].Header.Get("Idempotency-Key") != "" || r[3].URL.Query().Get("stale") != "true" {
		t.Fatalf("stale read %s %v", r[3].URL, r[3].Header)
	}
}

func TestStrictDecoding(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"name":"x","surprise":1}`))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	if _, err := client.New(srv.URL).Deployment(ctx, "x"); err != nil {
		t.Fatalf("lenient client: %v", err)
	}
	if _, err := client.New(srv.URL, client.WithStrictDecoding()).Deployment(ctx, "x"); err == nil {
		t.Fatal("a strict client accepted an unknown field")
	}
}
