package node

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// deadAfter sets TCP_USER_TIMEOUT on a new socket: the kernel closes the
// connection when data sent stays unacknowledged for d.
func deadAfter(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
