package cluster

import (
	"errors"
	"strings"
	"testing"
)

func TestJoinAddress(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{name: "host:port", in: "10.0.0.1:8080", want: "10.0.0.1:8080"},
		{name: "http URL", in: "http://10.0.0.1:8080", want: "10.0.0.1:8080"},
		{name: "https URL with a path", in: "https://node-1.example:8443/admin/v1?x=1", want: "node-1.example:8443"},
		{name: "URL without a port", in: "http://node-1", want: "node-1:80"},
		{name: "IPv6 URL", in: "http://[::1]:8080/", want: "[::1]:8080"},
		{name: "IPv6 host:port", in: "[::1]:8080", want: "[::1]:8080"},
		{name: "spaces around", in: " 10.0.0.1:8080 ", want: "10.0.0.1:8080"},
		{name: "no port", in: "10.0.0.1", err: "missing port"},
		{name: "other scheme", in: "raft://10.0.0.1:7000", err: "neither http nor https"},
		{name: "bad port", in: "10.0.0.1:http", err: "port http"},
		{name: "empty", in: "", err: "missing port"},
		{name: "URL without a host", in: "http://:8080", err: "no host"},
		{name: "mangled", in: "http//10.0.0.1:8080", err: "want host:port or a URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := JoinAddress(c.in)
			if c.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("JoinAddress(%q) = %q, %v; want an error mentioning %q", c.in, got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("JoinAddress(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}
