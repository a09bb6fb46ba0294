package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"

	"github.com/sovra/sovra/internal/bench"
)

// runBaselineProxy serves the baseline proxy until ctx ends.
func runBaselineProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline-proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "host:port to listen on")
	target := fs.String("target", "", "host:port of the upstream HTTP server")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *target == "" {
		return usageError{errors.New("baseline-proxy: --target is required")}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	p := bench.NewBaselineProxy(*target)
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	fmt.Printf("baseline proxy listening on %s, forwarding to %s\n", ln.Addr(), *target)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if err := p.Shutdown(); err != nil {
		return err
	}
	return <-done
}
