package admit

import (
	"errors"
	"fmt"
	"time"
)

// The reasons a request is refused a slot. Acquire returns them inside a
// *RejectError; test with errors.Is.
var (
	// ErrKeyOverShare: the queue is full and the request's API key already
	// holds at least its fair share of the waiting places, or its waiter
	// was pushed out to make room for a key that holds fewer (HTTP 429).
	ErrKeyOverShare = errors.New("admit: API key holds its share of the model queue")
	// ErrSaturated: every slot is busy and the request may not wait
	// (HTTP 503).
	ErrSaturated = errors.New("admit: model saturated")
	// ErrTimeout: the request waited the queue's Timeout without getting a
	// slot (HTTP 503).
	ErrTimeout = errors.New("admit: timed out waiting for a slot")
	// ErrWaitTooLong: the estimated wait already exceeds the queue's
	// Timeout, so the request is refused at once instead of after a long
	// hang (HTTP 503).
	ErrWaitTooLong = errors.New("admit: estimated wait too long")
)

// RejectError is why Acquire gave no slot, with a hint of when to retry.
type RejectError struct {
	// Reason is one of ErrKeyOverShare, ErrSaturated, ErrTimeout and
	// ErrWaitTooLong.
	Reason error
	// RetryAfter is the best estimate of when a retry could succeed; at
	// least one second. Rounding it for a Retry-After header is the
	// caller's business.
	RetryAfter time.Duration
	// Waited is how long the request waited in the queue before it was
	// refused; 0 when it was refused on arrival.
	Waited time.Duration

	msg string
}

// Error says in words a user understands why the request got no slot.
func (e *RejectError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	if e.Reason != nil {
		return e.Reason.Error()
	}
	return "admit: request rejected"
}

// Is reports whether target is the reason of the rejection.
func (e *RejectError) Is(target error) bool { return target != nil && target == e.Reason }

// Unwrap returns the reason, one of the package's sentinels.
func (e *RejectError) Unwrap() error { return e.Reason }

// busy describes the queue's load for a message: "N requests waiting for M slots".
func busy(queued, slots int) string {
	return plural(queued, "request") + " waiting for " + plural(slots, "slot")
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// human rounds a duration for a message.
func human(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// atLeastSecond bounds a retry hint from below.
func atLeastSecond(d time.Duration) time.Duration {
	return max(d, time.Second)
}

func saturatedError(running, slots int, retry time.Duration) *RejectError {
	return &RejectError{
		Reason:     ErrSaturated,
		RetryAfter: atLeastSecond(retry),
		msg: fmt.Sprintf("model is busy: all %s are generating (%d running) and no request may wait",
			plural(slots, "slot"), running),
	}
}

// keyWords are how a message names the requests of one key: an API
// key's, or those of the clients that sent none ("" is their key).
type keyWords struct {
	requests, holds, held, share string
}

func wordsFor(key string) keyWords {
	if key == "" {
		return keyWords{"requests without an API key", "requests without a key already hold", "requests without a key held", "their"}
	}
	return keyWords{"requests for this API key", "this key already holds", "this key held", "its"}
}

func overShareError(key string, held, share, keys, queued, slots int, retry time.Duration) *RejectError {
	w := wordsFor(key)
	return &RejectError{
		Reason:     ErrKeyOverShare,
		RetryAfter: atLeastSecond(retry),
		msg: fmt.Sprintf("too many waiting %s: the model queue is full (%s) and %s %d of the waiting places, %s fair share with %s is %d",
			w.requests, busy(queued, slots), w.holds, held, w.share, plural(keys, "key"), share),
	}
}

func pushedOutError(key string, held, queued, slots int, waited, retry time.Duration) *RejectError {
	return &RejectError{
		Reason:     ErrKeyOverShare,
		RetryAfter: atLeastSecond(retry),
		Waited:     waited,
		msg: fmt.Sprintf("request removed from the full model queue (%s) to make room for other clients: %s %d of the waiting places, more than any other key",
			busy(queued, slots), wordsFor(key).held, held),
	}
}

func timeoutError(limit, waited time.Duration, queued, slots int, retry time.Duration) *RejectError {
	return &RejectError{
		Reason:     ErrTimeout,
		RetryAfter: atLeastSecond(retry),
		Waited:     waited,
		msg: fmt.Sprintf("no slot of the model became free within %s (%s)",
			human(limit), busy(queued, slots)),
	}
}

func waitTooLongError(est, limit time.Duration, queued, slots int) *RejectError {
	return &RejectError{
		Reason:     ErrWaitTooLong,
		RetryAfter: atLeastSecond(est - limit),
		msg: fmt.Sprintf("model queue is too long: the estimated wait of %s exceeds the %s limit (%s)",
			human(est), human(limit), busy(queued, slots)),
	}
}
