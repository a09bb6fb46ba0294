package cluster

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// JoinAddress reads one address to join: a member's HTTP API as
// host:port, or as a URL (http:// or https://, as the other address flags
// take it; a path, query or fragment is ignored, a URL without a port has
// its scheme's). It returns host:port, or an error wrapping ErrInvalid
// that says what is accepted.
func JoinAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	hostport := s
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		u, err := url.Parse(s)
		if err != nil {
			return "", badJoin(s, err.Error())
		}
		switch strings.ToLower(scheme) {
		case "http", "https":
		default:
			return "", badJoin(s, "scheme "+scheme+" is neither http nor https")
		}
		hostport = u.Host
		if u.Port() == "" && u.Hostname() != "" {
			hostport = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[strings.ToLower(scheme)])
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", badJoin(s, err.Error())
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", badJoin(s, "port "+port+" is not a number from 1 to 65535")
	}
	if host == "" || strings.ContainsAny(host, " /\\@") {
		return "", badJoin(s, "no host")
	}
	return net.JoinHostPort(host, port), nil
}

func badJoin(s, why string) error {
	return fmt.Errorf("%w: join address %q: %s; want host:port or a URL such as http://10.0.0.1:8080", ErrInvalid, s, why)
}

// normalizeJoin turns every Join address into host:port, once.
func (cfg *Config) normalizeJoin() error {
	out := make([]string, 0, len(cfg.Join))
	for _, a := range cfg.Join {
		hp, err := JoinAddress(a)
		if err != nil {
			return err
		}
		out = append(out, hp)
	}
	cfg.Join = out
	return nil
}
