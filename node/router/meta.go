package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sovra/sovra/node/router/balance"
)

// JurisdictionLabel is the node label that says which jurisdiction a
// node's data stays in (for example jurisdiction=EU).
const JurisdictionLabel = "jurisdiction"

// Meta is what the router needs to know of a request's client.
type Meta struct {
	// Key identifies the client for fair queueing ("" is anonymous). It is
	// an opaque id, never a secret.
	Key string
	// Jurisdictions, when not empty, are the only jurisdictions whose
	// nodes may serve the request (upper case).
	Jurisdictions []string
	// ModelAllowed, when set, says whether the client may use a model
	// known by any of names (the name it asked for and the deployments
	// that name resolves to); a refusal is ErrModelForbidden.
	ModelAllowed func(names ...string) bool
}

// ErrModelForbidden is a request for a model its client's key may not use.
var ErrModelForbidden = errors.New("this key may not use the model")

type metaKey struct{}

// WithMeta attaches m to ctx.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// MetaOf returns the Meta attached to ctx (the zero Meta when none).
func MetaOf(ctx context.Context) Meta { return metaOf(ctx) }

func metaOf(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey{}).(Meta)
	return m
}

// ParseJurisdictions parses a comma-separated list of jurisdictions.
func ParseJurisdictions(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		j := strings.ToUpper(strings.TrimSpace(part))
		if j == "" {
			continue
		}
		for _, r := range j {
			if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return nil, fmt.Errorf("jurisdiction %q: use letters, digits, '-' or '_'", part)
			}
		}
		out = append(out, j)
	}
	if len(out) == 0 && strings.TrimSpace(s) != "" {
		return nil, errors.New("no jurisdiction in the list")
	}
	return out, nil
}

func (m Meta) allows(labels map[string]string) bool {
	if len(m.Jurisdictions) == 0 {
		return true
	}
	j := strings.ToUpper(labels[JurisdictionLabel])
	for _, a := range m.Jurisdictions {
		if a == j && j != "" {
			return true
		}
	}
	return false
}

// ErrResidency is what a *ResidencyError is.
var ErrResidency = errors.New("no replica in the allowed jurisdictions")

// ResidencyError reports a request whose allowed jurisdictions hold no
// ready replica of its model.
type ResidencyError struct {
	Model   string
	Allowed []string
	// Elsewhere are the jurisdictions that do hold a ready replica.
	Elsewhere []string
	// NotReady: a replica is placed in an allowed jurisdiction but is not
	// ready (loading, or its node is down), so a retry may succeed.
	NotReady bool
}

func (e *ResidencyError) Error() string {
	msg := fmt.Sprintf("no ready replica of model %s in the allowed jurisdictions %s", e.Model, strings.Join(e.Allowed, ","))
	if e.NotReady {
		msg += " (a replica there is not ready yet)"
	}
	if len(e.Elsewhere) > 0 {
		msg += fmt.Sprintf(" (replicas are ready in %s; the request was not sent there)", strings.Join(e.Elsewhere, ","))
	}
	return msg
}

// Is makes errors.Is(err, ErrResidency) hold.
func (e *ResidencyError) Is(target error) bool { return target == ErrResidency }

// Decision is what the router did with a request: which node and replica
// served it, why, how long it queued, and how many replicas it tried.
// The API turns it into response headers.
type Decision struct {
	mu        sync.Mutex
	node      string
	replica   string
	reason    balance.Reason
	queueWait time.Duration
	attempts  int
	// peerCode and peerRetry are the error code and Retry-After a peer
	// answered the last attempt with, if it refused it.
	peerCode  string
	peerRetry time.Duration
}

// DecisionView is a copy of a Decision's fields.
type DecisionView struct {
	Node, Replica string
	Reason        balance.Reason
	QueueWait     time.Duration
	Attempts      int
}

type decisionKey struct{}

// WithDecision attaches a fresh Decision to ctx for the router to fill.
func WithDecision(ctx context.Context) (context.Context, *Decision) {
	d := &Decision{}
	return context.WithValue(ctx, decisionKey{}, d), d
}

// DecisionOf returns the Decision attached to ctx, or nil.
func DecisionOf(ctx context.Context) *Decision {
	d, _ := ctx.Value(decisionKey{}).(*Decision)
	return d
}

// View copies the decision's fields.
func (d *Decision) View() DecisionView {
	if d == nil {
		return DecisionView{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return DecisionView{Node: d.node, Replica: d.replica, Reason: d.reason, QueueWait: d.queueWait, Attempts: d.attempts}
}

// SetQueueWait records how long the request waited for a slot (a peer
// transport sets it from the serving node's answer).
func (d *Decision) SetQueueWait(w time.Duration) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.queueWait = w
	d.mu.Unlock()
}

func (d *Decision) chose(node, replica string, why balance.Reason) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.node, d.replica, d.reason = node, replica, why
	d.peerCode, d.peerRetry = "", 0
	d.attempts++
	d.mu.Unlock()
}

// SetPeerError records the error code and Retry-After a peer refused the
// current attempt with (a peer transport sets it).
func (d *Decision) SetPeerError(code string, retry time.Duration) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.peerCode, d.peerRetry = code, retry
	d.mu.Unlock()
}

// PeerError is the error code and Retry-After of the peer that refused
// the last attempt ("" when it was not refused by a peer).
func (d *Decision) PeerError() (string, time.Duration) {
	if d == nil {
		return "", 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peerCode, d.peerRetry
}
