// Package chaos is sovra's fault suite: a cluster of real sovra processes
// on loopback, each over its own simulated Ollama, serves streamed and
// non-streamed inference and takes admin writes while the suite kills and
// restarts nodes (the leader with kill -9, followers, the whole cluster),
// freezes one, cuts the leader off from its peers (partition_test.go:
// cgroups and iptables, root only), makes Ollamas fail, stall, cut streams and go away, and hangs clients
// up mid-stream. Afterwards it checks that nothing acknowledged was lost,
// that the admin history is linearizable, that every node holds the same
// state, that every inference request succeeded or failed with a clear
// error (at least 99.5% of those no fault was on for succeeded), and
// reports the figures (go test -v ./internal/chaos).
//
// The short form runs in the default test run; SOVRA_CHAOS_SOAK=10m
// repeats the fault cycle for that long.
package chaos
