package node

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPeerDialerBoundsSilentConnections: a peer connection closes itself
// when what it sent goes unanswered for peerDeadAfter, and probes an idle
// peer.
func TestPeerDialerBoundsSilentConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := peerDialer().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var timeout, keep, idle int
	_ = raw.Control(func(fd uintptr) {
		timeout, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		keep, _ = unix.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	})
	if timeout != int(peerDeadAfter.Milliseconds()) || keep != 1 || idle != int(peerKeepIdle.Seconds()) {
		t.Fatalf("TCP_USER_TIMEOUT %d ms, keepalive %d, idle %d s; want %d ms, 1, %d s",
			timeout, keep, idle, peerDeadAfter.Milliseconds(), int(peerKeepIdle.Seconds()))
	}
}
