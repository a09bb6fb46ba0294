package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// defaultHealthURL is the readiness route of a node on this host's
// default port.
const defaultHealthURL = "http://127.0.0.1:8080/readyz"

// newHealthcheck is the hidden `sovra healthcheck`: container images
// without a shell or curl (deploy/docker/Dockerfile) run it as their
// health check. It GETs a node's /readyz, or the URL given, and exits 0
// on 200 and 1 otherwise, printing the node's reason.
func newHealthcheck() *cobra.Command {
	var addr string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:    "healthcheck",
		Short:  "Exit 0 when a node answers its readiness route with 200 (for container health checks)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := healthURL(addr)
			if err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return healthcheck(ctx, url)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultHealthURL, "host:port or URL of the node; a URL without a path asks /readyz")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

// healthURL makes a URL of host:port or a URL, asking /readyz when no
// path is given.
func healthURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	scheme, rest, _ := strings.Cut(addr, "://")
	if scheme != "http" && scheme != "https" || rest == "" {
		return "", fmt.Errorf("--addr %q: give host:port or an http(s) URL", addr)
	}
	if !strings.Contains(rest, "/") {
		addr += "/readyz"
	}
	return addr, nil
}

// healthcheck GETs url and succeeds on 200. Over https it does not verify
// the certificate (as Kubernetes' HTTPS probes do not): it sends no
// credential and learns only a status.
func healthcheck(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a probe, see above
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not healthy: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
