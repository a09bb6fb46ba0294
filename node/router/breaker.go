package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sovra/sovra/node/backend"
)

// Breaker settings: a replica that fails tripFailures times in a row is
// left out for breakerOpen, then tried with one request at a time until
// one succeeds. Client cancellations, rejected requests and a busy
// replica's refusals are neither failures nor successes.
const (
	tripFailures = 3
	breakerOpen  = 5 * time.Second
)

// errBreakerOpen: the replica's breaker does not let the request through.
var errBreakerOpen = fmt.Errorf("%w: the replica failed repeatedly and is resting", backend.ErrUnavailable)

// breakers are the circuit breakers of the replicas, by node and model.
type breakers struct {
	met *metrics
	mu  sync.Mutex
	m   map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

func newBreakers(met *metrics) *breakers {
	return &breakers{met: met, m: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{}}
}

func (b *breakers) get(node, model string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	key := node + "\x00" + model
	b.mu.Lock()
	defer b.mu.Unlock()
	cb, ok := b.m[key]
	if !ok {
		cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        key,
			MaxRequests: 1,
			Timeout:     breakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= tripFailures },
			IsExcluded:  notTheReplicasFault,
			OnStateChange: func(_ string, _, to gobreaker.State) {
				if to == gobreaker.StateOpen {
					b.met.tripped(node, model)
				}
			},
		})
		b.m[key] = cb
	}
	return cb
}

// closedOrProbing says whether the replica may be chosen: its breaker is
// not open.
func (b *breakers) closedOrProbing(node, model string) bool {
	return b.get(node, model).State() != gobreaker.StateOpen
}

// allow asks the replica's breaker to let one request through; done
// reports how the request went.
func (b *breakers) allow(node, model string) (func(error), error) {
	done, err := b.get(node, model).Allow()
	if err != nil {
		return nil, errBreakerOpen
	}
	return done, nil
}

// pastOpen is the done of a request sent to a resting replica past its
// open breaker (nothing else was left): a success puts a fresh, closed
// breaker in its place; anything else leaves it resting.
func (b *breakers) pastOpen(node, model string) func(error) {
	return func(err error) {
		if err != nil {
			return
		}
		b.mu.Lock()
		delete(b.m, node+"\x00"+model)
		b.mu.Unlock()
	}
}

// notTheReplicasFault are outcomes that say nothing of the replica's
// health: the client went away or sent a bad request, the request was
// turned away by admission control, or the replica was busy.
func notTheReplicasFault(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, backend.ErrBadRequest) || turnedAway(err)
}
