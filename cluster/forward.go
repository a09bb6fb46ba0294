package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// errRetry marks a failure that left no trace (nothing was handed to raft):
// the leader was busy or moving, or a peer could not be reached. The
// forwarding loop retries it; it never leaves this package.
var errRetry = errors.New("cluster: retry")

// leaderOp is one piece of leader-only work.
type leaderOp struct {
	route string // internal route the leader serves it on
	in    any    // request body when forwarded
	out   any    // response body when forwarded; local fills it itself
	local func(ctx context.Context) error
	// idempotent work may be retried even when an attempt's outcome is
	// unknown (reads, membership, keyed writes).
	idempotent bool
	// readOnly work changes nothing, so a lost answer is just a retry.
	readOnly bool
	// abort, when set, is asked before each attempt whether to give up
	// (this node's disk failed while the op waited for a leader).
	abort func() error
}

// onLeader runs op on the leader: here when this node leads, else over
// HTTP. It is the only place that forwards to the leader. It retries while
// retrying is safe and the context lasts; an attempt whose outcome is
// unknown makes a non-idempotent op end in ErrIndeterminate.
func (c *Cluster) onLeader(ctx context.Context, op leaderOp) error {
	unknown := false
	var err error
	for attempt := 0; ; attempt++ {
		// A caller that left (or whose deadline passed) starts nothing
		// more: no attempt may propose work after it.
		if cerr := ctx.Err(); cerr != nil {
			return finalErr(err, cerr, unknown)
		}
		if aerr := abortErr(op, unknown); aerr != nil {
			return aerr
		}
		changed := c.leaderChanged()
		err = c.attempt(ctx, op)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrIndeterminate):
			if !op.idempotent {
				return err
			}
			unknown = unknown || !op.readOnly
		case !retriable(err):
			return err
		}
		if werr := waitRetry(ctx, changed, attempt); werr != nil {
			return finalErr(err, werr, unknown)
		}
	}
}

// abortErr is the op's reason to give up, if any; after an attempt of
// unknown outcome the write's fate stays unknown.
func abortErr(op leaderOp, unknown bool) error {
	if op.abort == nil {
		return nil
	}
	err := op.abort()
	if err != nil && unknown {
		return fmt.Errorf("%w: %w", ErrIndeterminate, err)
	}
	return err
}

func (c *Cluster) attempt(ctx context.Context, op leaderOp) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.IsLeader() {
		return op.local(ctx)
	}
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return ErrNoLeader
	}
	addr := c.httpAddrOf(string(id))
	if addr == "" {
		return fmt.Errorf("%w: leader %s has no known HTTP address yet", errRetry, id)
	}
	return c.post(ctx, addr, op.route, true, op.in, op.out)
}

func retriable(err error) bool {
	return errors.Is(err, errRetry) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrExpired)
}

// finalErr is what a caller sees when the context ends during retries.
// Nothing reached raft unless unknown: a lost answer to a read is only a
// read that did not happen.
func finalErr(last, ctxErr error, unknown bool) error {
	switch {
	case unknown:
		return fmt.Errorf("%w: %w", ErrIndeterminate, ctxErr)
	case last == nil, retriable(last), errors.Is(last, ErrIndeterminate):
		return fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, ctxErr, last)
	}
	return fmt.Errorf("%w (last: %v)", ctxErr, last)
}

// waitRetry waits for a leader change or a growing backoff (10ms to 250ms).
func waitRetry(ctx context.Context, changed <-chan struct{}, attempt int) error {
	d := 10 * time.Millisecond << min(attempt, 5)
	t := time.NewTimer(min(d, 250*time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C:
	}
	return nil
}

// raftErr maps raft's errors to this package's: errors raised before the
// work was queued are retriable; losing leadership with work in flight
// leaves its outcome unknown.
func raftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", errRetry, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrIndeterminate, err)
	case errors.Is(err, errDiskFull):
		// The leader had no room to append it: nothing was written or
		// sent, and it stepped down; the next leader takes it.
		return fmt.Errorf("%w: %w", errRetry, err)
	case errors.Is(err, errDiskWrite):
		// The append failed, perhaps after the bytes were written.
		return fmt.Errorf("%w: %w", ErrIndeterminate, err)
	}
	return err
}

// --- peer HTTP calls ---

const (
	forwardedHeader = "Sovra-Forwarded"
	// timeoutHeader carries the milliseconds left of the caller's
	// deadline; the receiver works under that deadline.
	timeoutHeader = "Sovra-Timeout-Ms"
	routePrefix   = "/internal/v1/cluster/"
)

// internalTimeout bounds an internal call that carries no deadline (a
// node of an older version): no handler waits on the leader forever.
const internalTimeout = time.Minute

// errorBody is the JSON body of every failed internal call.
type errorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// post calls a peer's internal route. forwarded asks the peer to do the
// work itself or say it is not the leader, so a request makes one hop.
// A request that the peer cannot have acted on (refused, or not fully
// written) is errRetry; one whose answer was lost is ErrIndeterminate.
func (c *Cluster) post(ctx context.Context, addr, route string, forwarded bool, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	url := "https://" + addr + routePrefix + route
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if forwarded {
		req.Header.Set(forwardedHeader, "1")
	}
	if dl, ok := ctx.Deadline(); ok {
		// What is left of the caller's time, relative so that the two
		// nodes' clocks need not agree; the peer proposes nothing after it.
		req.Header.Set(timeoutHeader, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 0), 10))
	}
	var sent atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
	}))
	resp, err := c.client.Do(req)
	if err != nil {
		if !sent.Load() || notSent(err) {
			return fmt.Errorf("%w: %s: %v", errRetry, addr, err)
		}
		return fmt.Errorf("%w: %s %s: %v", ErrIndeterminate, addr, route, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading answer: %v", ErrIndeterminate, addr, route, err)
	}
	return nil
}

// attemptTimeout bounds one call of a retry loop to a peer that is not the
// leader (join, peer exchange): the peer itself may wait for a leader.
const attemptTimeout = 5 * time.Second

// postOnce is one bounded, unforwarded call of a retry loop.
func (c *Cluster) postOnce(ctx context.Context, addr, route string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return c.post(ctx, addr, route, false, in, out)
}

// notSent reports a failure to connect: the request never left. (post
// also knows a request was not sent when it was never fully written: the
// peer cannot act on half a body.)
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// decodeError turns an error response back into a sentinel.
func decodeError(resp *http.Response) error {
	var b errorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &b) != nil || b.Code == "" {
		return fmt.Errorf("%w: peer answered %s: %.200s", errRetry, resp.Status, raw)
	}
	if base, ok := errByCode[b.Code]; ok {
		return fmt.Errorf("%w (peer: %s)", base, b.Error)
	}
	return fmt.Errorf("peer: %s", b.Error)
}

// errByCode and codeOf translate sentinels for the wire.
var errByCode = map[string]error{
	"not_leader":         ErrNotLeader,
	"no_leader":          ErrNoLeader,
	"indeterminate":      ErrIndeterminate,
	"expired":            ErrExpired,
	"bad_token":          ErrBadToken,
	"not_peer":           ErrNotPeer,
	"member_exists":      ErrMemberExists,
	"restore_not_forced": ErrRestoreNotForced,
	"not_member":         ErrNotMember,
	"closed":             ErrClosed,
	"invalid":            ErrInvalid,
	"retry":              errRetry,
	"upgrade_required":   ErrUpgradeRequired,
	// A peer that cannot write its data directory hands its leadership
	// over: the caller tries again, at the next leader.
	"storage": errRetry,
}

func codeOf(err error) (string, int) {
	if errors.Is(err, ErrStorage) {
		return "storage", http.StatusServiceUnavailable
	}
	for _, e := range []struct {
		code   string
		status int
	}{
		{"bad_token", http.StatusForbidden},
		{"not_peer", http.StatusForbidden},
		{"member_exists", http.StatusConflict},
		{"upgrade_required", http.StatusConflict},
		{"invalid", http.StatusBadRequest},
		{"restore_not_forced", http.StatusConflict},
		{"not_member", http.StatusGone},
		{"indeterminate", http.StatusGatewayTimeout},
		{"expired", http.StatusServiceUnavailable},
		{"not_leader", http.StatusMisdirectedRequest},
		{"no_leader", http.StatusServiceUnavailable},
		{"retry", http.StatusServiceUnavailable},
		{"closed", http.StatusServiceUnavailable},
	} {
		if errors.Is(err, errByCode[e.code]) {
			return e.code, e.status
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "no_leader", http.StatusServiceUnavailable
	}
	return "internal", http.StatusInternalServerError
}

// logRetry logs a failure that a loop will retry, quietly unless it is
// about the token, which will not heal by itself.
func (c *Cluster) logRetry(msg string, err error, fields ...zap.Field) {
	fields = append(fields, zap.Error(err))
	if errors.Is(err, ErrBadToken) || errors.Is(err, ErrMemberExists) {
		c.log.Error(msg, fields...)
		return
	}
	c.log.Debug(msg, fields...)
}
