package node

import (
	"net"
	"time"
)

// Peer connections: how a node notices that a peer stopped answering
// (a partition, a host that vanished) on a connection already open. TCP
// alone retransmits for many minutes, and a request written into such a
// connection would wait for the partition to heal. Keepalives probe an
// idle connection after peerKeepIdle, every peerKeepEvery, and the
// connection is closed once data or probes go unanswered for
// peerDeadAfter (TCP_USER_TIMEOUT where the system has it): a request not
// yet answered then fails and is retried on another replica, a stream
// cut mid-answer ends with an error event. Kernels check the user
// timeout when a retransmission falls due, and retransmissions back off
// (0.2, 0.6, 1.4, 3, 6.2 s, ...), so a connection is closed at the first
// retransmission past peerDeadAfter: 6.2 s for 3 s (the fault suite saw
// 12.6 s for 5 s, past the router's 10 s retry budget).
const (
	peerKeepIdle  = 2 * time.Second
	peerKeepEvery = time.Second
	peerKeepCount = 3
	peerDeadAfter = 3 * time.Second
	peerDialLimit = 3 * time.Second
)

// peerDialer is the dialer of connections to peers.
func peerDialer() *net.Dialer {
	return &net.Dialer{
		Timeout: peerDialLimit,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: peerKeepIdle, Interval: peerKeepEvery, Count: peerKeepCount,
		},
		Control: deadAfter(peerDeadAfter),
	}
}
