package api

import (
	"errors"
	"net"
	"syscall"
)

// peeker returns a func that reports whether the peer closed conn, or nil
// where the connection cannot be peeked (TLS, in-memory test conns).
func peeker(conn net.Conn) func() bool {
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
		cerr := raw.Control(func(fd uintptr) {
			n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == nil && n == 0:
				closed = true // orderly shutdown by the peer
			case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR):
				closed = true // reset or other socket error
			}
		})
		return closed || cerr != nil
	}
}
