package node

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/pki"
)

// echoFirst accepts connections and writes back "ok" once it has read a
// byte, completing the TLS handshake first where there is one.
func echoFirst(t *testing.T, ln net.Listener) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					c.Write([]byte("ok"))
				}
			}()
		}
	}()
}

func answer(t *testing.T, c net.Conn) error {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	b := make([]byte, 2)
	_, err := io.ReadFull(c, b)
	return err
}

func testKeyring(t *testing.T) *pki.Keyring {
	t.Helper()
	creds, err := pki.NewCluster("n1")
	if err != nil {
		t.Fatal(err)
	}
	var k pki.Keyring
	k.Set(creds)
	return &k
}

func TestListenerSortsPlainAndTLS(t *testing.T) {
	keys := testKeyring(t)
	ln, err := listen("127.0.0.1:0", listenerConfig{keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoFirst(t, ln)
	addr := ln.Addr().String()

	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := answer(t, plain); err != nil {
		t.Fatalf("plain connection: %v", err)
	}
	peer, err := tls.Dial("tcp", addr, keys.ClientConfig(cluster.ServerName))
	if err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
	if err := answer(t, peer); err != nil {
		t.Fatalf("peer connection: %v", err)
	}
	// Without a public certificate, TLS is for peers only.
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "api.example"}); err == nil {
		c.Close()
		t.Fatal("a client that is no peer got a TLS session")
	}
}

func TestListenerWithPublicCertRefusesPlain(t *testing.T) {
	ca, err := pki.NewCA("public")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	certPEM, _ := ca.Issue("api", key.Public(), []string{"127.0.0.1"})
	keyPEM, _ := pki.EncodeKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.pem"), filepath.Join(dir, "api-key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	public, err := pki.LoadFileCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen("127.0.0.1:0", listenerConfig{keys: testKeyring(t), public: public})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoFirst(t, ln)
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("client over TLS with the public CA: %v", err)
	}
	if err := answer(t, c); err != nil {
		t.Fatal(err)
	}
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := answer(t, plain); err == nil {
		t.Fatal("plain HTTP answered although the API serves TLS")
	}
}

// TestListenerBoundsSilentConnections: connections that never send a
// byte are held up to a bound; more are closed at once.
func TestListenerBoundsSilentConnections(t *testing.T) {
	ln, err := listen("127.0.0.1:0", listenerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetMaxPending(4)
	defer ln.Close()
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	closed := 0
	for range 10 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue // still held
		}
		closed++
	}
	if closed != 6 {
		t.Fatalf("%d of 10 silent connections closed, want 6 beyond the bound of 4", closed)
	}
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	conn net.Conn
	done chan struct{}
	once bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.once {
		l.once = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConnListener) Close() error   { close(l.done); return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestClosedTLSConnDoesNotCrashTheServer: fasthttp sets a read deadline on
// a TLS connection before its handshake and panics when that fails; a
// connection closed before fasthttp reaches it (a graceful stop sweeps
// idle ones) must end quietly instead.
func TestClosedTLSConnDoesNotCrashTheServer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	keys := testKeyring(t)
	conn := &tlsConn{tls.Server(a, keys.ServerConfig(nil))}
	conn.Close()
	served := make(chan struct{})
	srv := &fasthttp.Server{
		Handler:     func(*fasthttp.RequestCtx) {},
		ReadTimeout: time.Minute,
		ConnState: func(_ net.Conn, st fasthttp.ConnState) {
			if st == fasthttp.StateClosed {
				close(served)
			}
		},
	}
	ln := &oneConnListener{conn: conn, done: make(chan struct{})}
	go srv.Serve(ln)
	defer srv.Shutdown()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the closed connection was never let go")
	}
}
