package preplisten

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestClosePreparing: Close ends preparations in progress and returns
// once none runs; Accept then reports the listener closed.
func TestClosePreparing(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	l := New(inner, func(c net.Conn) (net.Conn, error) {
		started <- struct{}{}
		_, err := c.Read(make([]byte, 1)) // blocks until Close closes c
		return nil, err
	}, 8)
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was never prepared")
	}
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited on a preparation it should have ended")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

// TestPreparedConnectionsInOrder: a failed preparation closes its
// connection; a good one is handed out.
func TestFailedPreparationIsClosed(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, func(c net.Conn) (net.Conn, error) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != 'y' {
			return nil, errors.New("refused")
		}
		return c, nil
	}, 8)
	defer l.Close()
	bad, _ := net.Dial("tcp", inner.Addr().String())
	defer bad.Close()
	bad.Write([]byte("n"))
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatal("a refused connection stayed open")
	}
	good, _ := net.Dial("tcp", inner.Addr().String())
	defer good.Close()
	good.Write([]byte("y"))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
