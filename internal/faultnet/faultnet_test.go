package faultnet

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer accepts connections and echoes until they close.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestPartitionRefusesAndCuts(t *testing.T) {
	n := New()
	addr := echoServer(t)
	n.Register("b", addr)
	dial := n.DialContext("a")

	c, err := dial(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n.Partition([]string{"a"}, []string{"b"})
	if !n.Cut("a", "b") || !n.Cut("b", "a") {
		t.Fatal("partition is not symmetric")
	}
	// The open connection was cut...
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a cut connection succeeded")
	}
	// ...and new ones are refused like a closed port.
	_, err = dial(t.Context(), "tcp", addr)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial across a partition: %v", err)
	}
	// Other nodes are unaffected; healing restores the link.
	if c2, err := n.DialContext("c")(t.Context(), "tcp", addr); err != nil {
		t.Fatalf("unrelated node: %v", err)
	} else {
		c2.Close()
	}
	n.Heal()
	c3, err := dial(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("after heal: %v", err)
	}
	c3.Close()
}

func TestLatency(t *testing.T) {
	n := New()
	addr := echoServer(t)
	n.Register("b", addr)
	n.SetLatency("a", "b", 50*time.Millisecond)
	c, err := n.DialContext("a")(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("round trip took %s, want at least the added 50ms", d)
	}
}
