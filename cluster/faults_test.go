package cluster

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testwait"
)

// lossyTransport loses the answer of the next `drop` apply calls: the
// request reaches the leader, the response never comes back.
type lossyTransport struct {
	http.RoundTripper
	drop atomic.Int32
}

func (l *lossyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.RoundTripper.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, "/apply") && l.drop.Add(-1) >= 0 {
		resp.Body.Close()
		return nil, errors.New("connection reset by peer (injected)")
	}
	return resp, err
}

func (l *lossyTransport) CloseIdleConnections() {
	if c, ok := l.RoundTripper.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func TestLostForwardedAnswerIsIndeterminate(t *testing.T) {
	lossy := map[string]*lossyTransport{}
	tc := newCluster(t, testOpts{n: 3, transport: func(id string, rt http.RoundTripper) http.RoundTripper {
		l := &lossyTransport{RoundTripper: rt}
		lossy[id] = l
		return l
	}})
	f := tc.followers()[0]

	// Without a key the write cannot be retried: its outcome is unknown,
	// though in fact it was applied.
	lossy[f.id].drop.Store(1)
	_, err := f.c.Apply(ctxFor(t, 10*time.Second), putCmd("unkeyed", 4, ""))
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("lost answer: %v", err)
	}
	if got := tc.replicasOf(f, "unkeyed"); got != 4 {
		t.Fatalf("unkeyed = %d", got)
	}

	// With a key the forwarding path retries and learns the outcome; the
	// command is applied once.
	lossy[f.id].drop.Store(2)
	out, err := f.c.Apply(ctxFor(t, 10*time.Second), putCmd("keyed", 5, "k-lost"))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Replayed {
		t.Fatalf("retry after a lost answer was not a replay: %+v", out)
	}
	f.c.Machine().Read(func(s *state.State) {
		if d := s.Deployments["keyed"]; d == nil || d.Version != 1 {
			t.Fatalf("keyed applied more than once: %+v", d)
		}
	})
}

func TestUnreachableLeaderIsNotIndeterminate(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	f := tc.followers()[0]
	tc.net.Isolate(f.id)
	defer tc.net.Heal()
	// Every attempt is refused before anything is sent: nothing was
	// applied, and the caller is told so.
	_, err := f.c.Apply(ctxFor(t, 500*time.Millisecond), putCmd("never", 1, ""))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrIndeterminate) {
		t.Fatalf("isolated follower write: %v", err)
	}
	tc.net.Heal()
	if got := tc.replicasOf(f, "never"); got != -1 {
		t.Fatalf("refused write applied: %d", got)
	}
}

func TestPartitionedLeaderWriteIsIndeterminate(t *testing.T) {
	tc := newCluster(t, testOpts{n: 3})
	l := tc.leader()
	tc.net.Isolate(l.id)
	// The entry reaches the old leader's log but cannot commit; the leader
	// steps down and cannot tell.
	_, err := l.c.Apply(ctxFor(t, 5*time.Second), putCmd("limbo", 1, ""))
	if !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("write on a partitioned leader: %v", err)
	}
	tc.net.Heal()
	// The majority side elected a leader and the old one follows it.
	testwait.For(t, 10*time.Second, "old leader rejoined", func() bool { return tc.leader() != nil })
	tc.put(l, "after-heal", 1)
	tc.waitConverged()
}

func TestMalformedEntryRefused(t *testing.T) {
	tc := newCluster(t, testOpts{n: 1})
	n := tc.nodes[0]
	for _, entry := range [][]byte{nil, {1}, {byte(state.TypePutDeployment), 0, 'x'}} {
		_, err := n.c.applyEntry(ctxFor(t, 5*time.Second), entry, false)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("entry %q: %v", entry, err)
		}
	}
	// A type this version does not know came from a newer one.
	if _, err := n.c.applyEntry(ctxFor(t, 5*time.Second), []byte{99, 0, '{', '}'}, false); !errors.Is(err, ErrUpgradeRequired) {
		t.Fatalf("entry of an unknown type: %v", err)
	}
	// The same over the wire, as a peer would send it.
	err := n.c.post(ctxFor(t, 5*time.Second), n.cfg.HTTPAddr, "apply", true, applyRequest{Entry: []byte{42, 0}}, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("malformed entry over http: %v", err)
	}
	tc.put(n, "still-alive", 1)
}
