package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/internal/testwait"
)

func observedHCLog() (*hclogZap, *observer.ObservedLogs, *testwait.Clock) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newHCLog(zap.New(core)).Named("raft").(*hclogZap)
	clock := testwait.NewClock()
	h.limit.Now = clock.Now
	return h, logs, clock
}

// TestHCLogRendersFormats checks that raft's configuration, which it
// passes as hclog.Fmt("%+v", servers), is logged as text, not as
// ["%+v", null].
func TestHCLogRendersFormats(t *testing.T) {
	h, logs, _ := observedHCLog()
	servers := []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:7000"}}
	h.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", servers))
	h.With("port", hclog.Hex(255)).Info("listening")
	all := logs.All()
	if got := all[0].ContextMap()["servers"]; got != "[{Suffrage:Voter ID:n1 Address:127.0.0.1:7000}]" {
		t.Errorf("servers logged as %#v", got)
	}
	if got := all[1].ContextMap()["port"]; got != "0xff" {
		t.Errorf("hex logged as %#v", got)
	}
}

// TestHCLogLevels checks that a healthy start's routine messages are not
// warnings.
func TestHCLogLevels(t *testing.T) {
	cases := []struct {
		msg   string
		level hclog.Level
		want  zapcore.Level
	}{
		{"heartbeat timeout reached, starting election", hclog.Warn, zap.InfoLevel},
		{"appendEntries rejected, sending older logs", hclog.Warn, zap.DebugLevel},
		{"failed to get previous log", hclog.Warn, zap.DebugLevel},
		{"pipelining replication", hclog.Info, zap.DebugLevel},
		{"entering leader state", hclog.Info, zap.InfoLevel},
		{"failed to contact quorum of nodes, stepping down", hclog.Warn, zap.WarnLevel},
		{"something trace", hclog.Trace, zap.DebugLevel},
	}
	for _, c := range cases {
		t.Run(c.msg, func(t *testing.T) {
			h, logs, _ := observedHCLog()
			h.Log(c.level, c.msg)
			if all := logs.All(); len(all) != 1 || all[0].Level != c.want {
				t.Fatalf("logged %+v, want one line at %v", all, c.want)
			}
		})
	}
}

// TestHCLogLimitsRepeats checks that an error raft repeats while a peer is
// down (twice a second) is logged once, then once per interval with a
// count, per peer.
func TestHCLogLimitsRepeats(t *testing.T) {
	h, logs, clock := observedHCLog()
	down := errors.New("dial tcp 127.0.0.1:7001: connect: connection refused")
	for range 20 {
		h.Error("failed to heartbeat to", "peer", "127.0.0.1:7001", "backoff time", time.Second, "error", down)
		h.Error("failed to appendEntries to", "peer", raft.Server{ID: "n2", Address: "127.0.0.1:7001"}, "error", down)
		clock.Advance(500 * time.Millisecond)
	}
	h.Error("failed to heartbeat to", "peer", "127.0.0.1:7002", "error", down) // another peer
	var lines []string
	for _, e := range logs.All() {
		lines = append(lines, fmt.Sprint(e.Message, " ", e.ContextMap()["peer"]))
	}
	want := []string{"failed to heartbeat to 127.0.0.1:7001", "failed to appendEntries to {Voter n2 127.0.0.1:7001}",
		"failed to heartbeat to 127.0.0.1:7002"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	clock.Advance(30 * time.Second)
	h.Error("failed to heartbeat to", "peer", "127.0.0.1:7001", "error", down)
	last := logs.All()[logs.Len()-1]
	if last.Message != "failed to heartbeat to" || last.ContextMap()["repeated"] != int64(19) {
		t.Fatalf("summary %s %v, want a count of the 19 left out", last.Message, last.ContextMap())
	}
}
