package main

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the one logger of the process, on stderr.
func newLogger(format, level string) (*zap.Logger, error) {
	cfg, err := loggerConfig(format, level, isTerminal(os.Stderr))
	if err != nil {
		return nil, err
	}
	return cfg.Build()
}

// loggerConfig is the logger's configuration; tty says the output is a
// terminal: only then does the console format colour its levels.
func loggerConfig(format, level string, tty bool) (zap.Config, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return zap.Config{}, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		if tty {
			cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
	default:
		return zap.Config{}, usageError{fmt.Errorf("--log-format %q: want json or console", format)}
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	return cfg, nil
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
