package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// TestConsoleColoursOnlyTerminals checks that the console format writes
// ANSI colour codes to a terminal only, not to a file or a pipe.
func TestConsoleColoursOnlyTerminals(t *testing.T) {
	for _, tty := range []bool{false, true} {
		cfg, err := loggerConfig("console", "info", tty)
		if err != nil {
			t.Fatal(err)
		}
		enc := zapcore.NewConsoleEncoder(cfg.EncoderConfig)
		buf, err := enc.EncodeEntry(zapcore.Entry{Level: zapcore.WarnLevel, Time: time.Now(), Message: "m"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if coloured := strings.Contains(buf.String(), "\x1b["); coloured != tty {
			t.Errorf("terminal %v: line %q coloured %v", tty, buf.String(), coloured)
		}
	}
}
