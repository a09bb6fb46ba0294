//go:build !linux

package node

import (
	"syscall"
	"time"
)

// deadAfter does nothing where TCP_USER_TIMEOUT is missing: keepalives
// alone close a silent connection.
func deadAfter(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
