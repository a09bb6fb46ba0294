package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/cluster"
)

// Admin call deadlines: ?timeout= sets one call's, within these bounds.
const (
	DefaultAdminTimeout = 10 * time.Second
	MinAdminTimeout     = 100 * time.Millisecond
	MaxAdminTimeout     = time.Minute
)

// adminDeadline bounds every admin call by its deadline: ?timeout= (a
// duration such as "2s" or "500ms", or a number of seconds) between
// MinAdminTimeout and MaxAdminTimeout, DefaultAdminTimeout without one.
// The call's context also ends when the client hangs up (fasthttp does
// not notice by itself), so an abandoned call stops waiting for a leader
// and proposes nothing once it has ended.
func (s *Server) adminDeadline(c *fiber.Ctx) error {
	d, err := adminTimeout(c.Query("timeout"))
	if err != nil {
		return err
	}
	// The request's own context carries its principal and audit record;
	// the server's base context ends it at shutdown.
	ctx, cancel := context.WithTimeout(c.UserContext(), d)
	defer cancel()
	defer context.AfterFunc(s.base, cancel)()
	defer s.hangups.watch(ctx, c.Context().Conn(), cancel)()
	c.SetUserContext(ctx)
	return deadlineErr(c.Next(), d)
}

// adminTimeout parses ?timeout=.
func adminTimeout(v string) (time.Duration, error) {
	if v == "" {
		return DefaultAdminTimeout, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		secs, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, invalidParam("timeout", "timeout %q: give a duration such as \"2s\" or a number of seconds", cut(v))
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < MinAdminTimeout || d > MaxAdminTimeout {
		return 0, invalidParam("timeout", "timeout %q: between %v and %v", cut(v), MinAdminTimeout, MaxAdminTimeout)
	}
	return d, nil
}

// deadlineErr says that a call ran out of time in words an operator can
// act on; the cluster's own errors (no_leader, indeterminate) pass as they
// are.
func deadlineErr(err error, d time.Duration) error {
	var ae *Error
	switch {
	case err == nil, errors.As(err, &ae), errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrIndeterminate):
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, cluster.ErrExpired):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "timeout", RetryAfter: 1,
			Message: "the cluster did not answer within the call's deadline (" + d.String() + ", ?timeout= sets it): " + err.Error()}
	}
	return err
}
