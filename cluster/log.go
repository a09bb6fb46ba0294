package cluster

import (
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sovra/sovra/internal/ratelog"
)

// hclogZap hands raft's hclog calls to zap. Levels map one to one (trace
// goes to debug) except the messages in raftLevels; the level itself is
// zap's. Warnings and errors repeat while a peer is down (twice a second
// and more): each is logged once per key (message and peer), then at
// most once per ratelog.DefaultEvery with how many it stands for.
type hclogZap struct {
	z     *zap.SugaredLogger
	name  string
	args  []any
	limit *ratelog.Limiter // shared by every logger derived from one
}

func newHCLog(z *zap.Logger) hclog.Logger {
	return &hclogZap{z: z.Sugar(), limit: &ratelog.Limiter{}}
}

// raftLevels are the levels of raft messages that are routine where raft
// logs them as warnings, or chatty where it logs them at info: a follower
// catching up, a joining node waiting to be added, an election on a
// healthy start.
var raftLevels = map[string]hclog.Level{
	"pipelining replication":                     hclog.Debug,
	"aborting pipeline replication":              hclog.Debug,
	"appendEntries rejected, sending older logs": hclog.Debug,
	"failed to get previous log":                 hclog.Debug,
	"heartbeat timeout reached, not part of a stable configuration or a non-voter, not triggering a leader election": hclog.Debug,
	"heartbeat timeout reached, starting election":                                                                   hclog.Info,
	"Election timeout reached, restarting election":                                                                  hclog.Info,
}

// limitKeys are the arguments that name the peer a repeating message is
// about; the first one present is part of the rate limit's key.
var limitKeys = map[string]bool{"peer": true, "server-id": true, "target": true, "from": true, "candidate": true}

func (h *hclogZap) Log(level hclog.Level, msg string, args ...any) {
	if l, ok := raftLevels[msg]; ok {
		level = l
	}
	args = render(args)
	if level >= hclog.Warn && level != hclog.Off {
		ok, n := h.limit.Allow(h.name + "\x00" + msg + "\x00" + peerOf(args))
		if !ok {
			return
		}
		if n > 0 {
			args = append(args, "repeated", n)
		}
	}
	switch level {
	case hclog.NoLevel, hclog.Off:
	case hclog.Trace, hclog.Debug:
		h.z.Debugw(msg, args...)
	case hclog.Info:
		h.z.Infow(msg, args...)
	case hclog.Warn:
		h.z.Warnw(msg, args...)
	default:
		h.z.Errorw(msg, args...)
	}
}

// render formats hclog's deferred values (raft passes its configuration
// as hclog.Fmt("%+v", servers)), which zap would print as a bare list.
func render(args []any) []any {
	var out []any
	for i, a := range args {
		var s string
		switch v := a.(type) {
		case hclog.Format:
			if len(v) == 0 {
				continue
			}
			format, _ := v[0].(string)
			s = fmt.Sprintf(format, v[1:]...)
		case hclog.Hex:
			s = fmt.Sprintf("0x%x", int(v))
		case hclog.Octal:
			s = fmt.Sprintf("0%o", int(v))
		case hclog.Binary:
			s = fmt.Sprintf("0b%b", int(v))
		default:
			continue
		}
		if out == nil {
			out = append([]any{}, args...)
		}
		out[i] = s
	}
	if out == nil {
		return args
	}
	return out
}

// peerOf is the value of the first argument that names a peer.
func peerOf(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && limitKeys[k] {
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

func (h *hclogZap) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogZap) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogZap) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogZap) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogZap) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogZap) enabled(l zapcore.Level) bool { return h.z.Desugar().Core().Enabled(l) }
func (h *hclogZap) IsTrace() bool                { return h.enabled(zap.DebugLevel) }
func (h *hclogZap) IsDebug() bool                { return h.enabled(zap.DebugLevel) }
func (h *hclogZap) IsInfo() bool                 { return h.enabled(zap.InfoLevel) }
func (h *hclogZap) IsWarn() bool                 { return h.enabled(zap.WarnLevel) }
func (h *hclogZap) IsError() bool                { return h.enabled(zap.ErrorLevel) }
func (h *hclogZap) ImpliedArgs() []any           { return h.args }
func (h *hclogZap) Name() string                 { return h.name }

func (h *hclogZap) With(args ...any) hclog.Logger {
	args = render(args)
	return &hclogZap{z: h.z.With(args...), name: h.name, args: append(append([]any{}, h.args...), args...), limit: h.limit}
}

func (h *hclogZap) Named(name string) hclog.Logger {
	full := name
	if h.name != "" {
		full = h.name + "." + name
	}
	return &hclogZap{z: h.z.Named(name), name: full, args: h.args, limit: h.limit}
}

// ResetNamed keeps zap's name: zap names only grow.
func (h *hclogZap) ResetNamed(name string) hclog.Logger {
	return &hclogZap{z: h.z, name: name, args: h.args, limit: h.limit}
}

// SetLevel is a no-op: zap's level rules.
func (h *hclogZap) SetLevel(hclog.Level) {}

func (h *hclogZap) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogZap) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return zap.NewStdLog(h.z.Desugar())
}

func (h *hclogZap) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(nil).Writer()
}
