package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sovra/sovra/internal/testcerts"
)

// fakeFeed streams numbered frames to each watcher until its context ends.
type fakeFeed struct {
	peers chan string // the peer of each watch, as it starts
	ended chan error  // why each watch ended
}

func (f *fakeFeed) Watch(ctx context.Context, peer string, send func([]byte) error) error {
	f.peers <- peer
	err := send([]byte(`{"node":"self","seq":1}` + "\n"))
	if err == nil {
		<-ctx.Done()
		err = ctx.Err()
	}
	f.ended <- err
	return err
}

// startFeedServer serves a load feed over TLS to clients of ca, with or
// without a certificate (the peer check then refuses them).
func startFeedServer(t *testing.T, ca *testcerts.CA, feed LoadFeed) (*Server, string) {
	t.Helper()
	cfg := testConfig()
	cfg.LoadFeed = feed
	cfg.PeerID = func(st *tls.ConnectionState) (string, error) {
		if st == nil || len(st.PeerCertificates) == 0 {
			return "", errors.New("no client certificate")
		}
		return st.PeerCertificates[0].Subject.CommonName, nil
	}
	s := New(cfg, &fakeBackend{}, nil, zaptest.NewLogger(t))
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := ca.Config(t, "self")
	server.ClientAuth = tls.VerifyClientCertIfGiven
	go func() { _ = s.Serve(tls.NewListener(raw, server)) }()
	return s, "https://" + raw.Addr().String() + "/internal/v1/load?watch=1"
}

func feedClient(t *testing.T, cfg *tls.Config) *http.Client {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestLoadFeedStreamsToPeersAndEndsAtShutdown(t *testing.T) {
	ca := testcerts.NewCA(t)
	feed := &fakeFeed{peers: make(chan string, 1), ended: make(chan error, 1)}
	s, url := startFeedServer(t, ca, feed)

	resp, err := feedClient(t, ca.Config(t, "peer-b")).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if peer := <-feed.peers; peer != "peer-b" {
		t.Errorf("the feed was told the peer is %q", peer)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != `{"node":"self","seq":1}`+"\n" {
		t.Fatalf("first frame %q: %v", line, err)
	}

	// The watch never ends by itself: Shutdown ends it rather than
	// waiting for it until its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a watch open: %v", err)
	}
	if err := <-feed.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the watch ended with %v", err)
	}
}

func TestLoadFeedOnlyForPeers(t *testing.T) {
	ca := testcerts.NewCA(t)
	feed := &fakeFeed{peers: make(chan string, 1), ended: make(chan error, 1)}
	s, url := startFeedServer(t, ca, feed)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	anonymous := ca.Config(t, "client")
	anonymous.Certificates = nil
	resp, err := feedClient(t, anonymous).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a watch without a client certificate: %d", resp.StatusCode)
	}
	select {
	case peer := <-feed.peers:
		t.Fatalf("the feed served %q", peer)
	default:
	}
}
