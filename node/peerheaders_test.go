package node

import (
	"context"
	"net/http"
	"testing"

	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/router"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPeerHeadersCarryLeaveToSendBack: a forwarded attempt the router lets
// the peer send back carries the header that says so, and no other does;
// the peer's error code comes back into the request's decision.
func TestPeerHeadersCarryLeaveToSendBack(t *testing.T) {
	for _, allow := range []bool{false, true} {
		var got string
		p := peerHeaders{base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = r.Header.Get(api.HeaderMaySendBack)
			h := http.Header{}
			h.Set(api.HeaderErrorCode, router.SentBackCode)
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: h, Body: http.NoBody, Request: r}, nil
		})}
		ctx, d := router.WithDecision(context.Background())
		if allow {
			ctx = router.AllowSendBack(ctx)
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://peer/internal/v1/forward/api/chat", http.NoBody)
		if _, err := p.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if (got != "") != allow {
			t.Errorf("allowed %v: header %q", allow, got)
		}
		if code, _ := d.PeerError(); code != router.SentBackCode {
			t.Errorf("the peer's code came back as %q", code)
		}
	}
}
