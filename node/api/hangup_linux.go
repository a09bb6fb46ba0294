package api

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tlsConner is a TLS connection: *tls.Conn, or a wrapper of one.
type tlsConner interface {
	NetConn() net.Conn
	ConnectionState() tls.ConnectionState
}

// peeker returns a func that reports whether the peer closed conn, or nil
// where the connection's socket cannot be reached (in-memory test conns).
func peeker(conn net.Conn) func() bool {
	if tc, ok := conn.(tlsConner); ok {
		// A TLS client that hangs up sends a close_notify record before
		// its FIN, so peeking finds data, not an end of file: ask the
		// kernel for the TCP state instead.
		return socketCheck(tc.NetConn(), peerClosedTCP)
	}
	return socketCheck(conn, peerClosedPeek)
}

// socketCheck runs check on conn's socket.
func socketCheck(conn net.Conn, check func(fd int, buf []byte) bool) func() bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	buf := make([]byte, 1)
	return func() bool {
		closed := false
		cerr := raw.Control(func(fd uintptr) { closed = check(int(fd), buf) })
		return closed || cerr != nil
	}
}

// peerClosedPeek peeks at the socket: an end of file or an error means the
// peer is gone; a pipelined next request's bytes stay for the server.
func peerClosedPeek(fd int, buf []byte) bool {
	n, _, err := syscall.Recvfrom(fd, buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == nil && n == 0:
		return true // orderly shutdown by the peer
	case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR):
		return true // reset or other socket error
	}
	return false
}

// peerClosedTCP reads the socket's TCP state: the peer has sent its FIN
// (close-wait, last-ack) or the connection is gone (close).
func peerClosedTCP(fd int, _ []byte) bool {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return true
	}
	switch info.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSE:
		return true
	}
	return false
}
