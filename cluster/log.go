package cluster

import (
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hclogZap hands raft's hclog calls to zap. Levels map one to one (trace
// goes to debug); the level itself is zap's.
type hclogZap struct {
	z    *zap.SugaredLogger
	name string
	args []any
}

func newHCLog(z *zap.Logger) hclog.Logger { return &hclogZap{z: z.Sugar()} }

func (h *hclogZap) Log(level hclog.Level, msg string, args ...any) {
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
	return &hclogZap{z: h.z.With(args...), name: h.name, args: append(append([]any{}, h.args...), args...)}
}

func (h *hclogZap) Named(name string) hclog.Logger {
	full := name
	if h.name != "" {
		full = h.name + "." + name
	}
	return &hclogZap{z: h.z.Named(name), name: full, args: h.args}
}

// ResetNamed keeps zap's name: zap names only grow.
func (h *hclogZap) ResetNamed(name string) hclog.Logger {
	return &hclogZap{z: h.z, name: name, args: h.args}
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
