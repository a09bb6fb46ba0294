package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

// explain turns an error of a call into a message that says what to do
// next; the exit code stays 1 unless the error carries another.
func (g *globals) explain(err error, t target) error {
	if err == nil {
		return nil
	}
	var ee *ExitErr
	if errors.As(err, &ee) {
		return err
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		// Keep what wrapped the API's error (a next step) around the hint.
		return errors.New(strings.Replace(err.Error(), ce.Error(), g.apiHint(ce, t), 1))
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua), errors.As(err, &hn), strings.Contains(err.Error(), "certificate"):
		return fmt.Errorf("%v\nthe node's certificate is not trusted: give its CA with --ca-cert (or the context's), or check the address", err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach %s: nothing listens there; is the node running? Name another with --addr or SOVRA_ADDR", t.addr)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s speaks plain HTTP: use an http:// address", t.addr)
	case isTimeout(err):
		return fmt.Errorf("%s did not answer in time: %v", t.describe(), err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// apiHint is the message of an error answer, with the next step.
func (g *globals) apiHint(e *client.Error, t target) string {
	msg := e.Message
	switch {
	case errors.Is(e, client.ErrNoLeader):
		return "no leader: the cluster has lost its majority (" + msg + "); `sovra status` on each node shows who is reachable"
	case errors.Is(e, client.ErrIndeterminate):
		return fmt.Sprintf("%s\nthe change may or may not have been applied: rerun the same command with --idempotency-key %s to learn which, without applying it twice", msg, g.idempotencyKey)
	case errors.Is(e, client.ErrUnauthorized):
		return fmt.Sprintf("%s refused the credential (%s): give the management token or an admin key with --token-file, SOVRA_TOKEN or the context (`sovra context add`)", t.describe(), msg)
	case errors.Is(e, client.ErrForbidden):
		return msg + ": this credential may not do that; admin calls need the management token or a key of role admin"
	case errors.Is(e, client.ErrRateLimited):
		return fmt.Sprintf("%s (retry after %v)", msg, e.RetryAfter)
	case errors.Is(e, client.ErrUnavailable):
		return msg + ": the cluster cannot answer now; `sovra status` shows its members"
	}
	return msg
}

// group makes c a command that only holds others: alone it shows its
// help; with an unknown subcommand it is a usage error.
func group(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return UsageError("unknown command %q for %q: see %s --help", args[0], c.CommandPath(), c.CommandPath())
		}
		return c.Help()
	}
	return c
}

func errorsIsConflict(err error) bool { return errors.Is(err, client.ErrConflict) }

// wrapHint adds a next step under an error.
func wrapHint(err error, hint string) error { return fmt.Errorf("%w\n%s", err, hint) }
