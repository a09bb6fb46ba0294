package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestTableColourAndAlignment(t *testing.T) {
	draw := func(color, wide bool) string {
		tb := &table{color: color, wide: wide}
		tb.head("NODE", "STATUS", "+ADDR")
		tb.row("a", "ready", "10.0.0.1:8080")
		tb.row("bb\x1b[2Jcc", "down", "x")
		tb.row(strings.Repeat("n", 60), "draining", "y")
		var b bytes.Buffer
		if err := tb.write(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	plain := draw(false, false)
	if ansi.MatchString(plain) || strings.Contains(plain, "ADDR") {
		t.Fatalf("plain table has colour or a wide column:\n%q", plain)
	}
	if !strings.Contains(plain, "bb?[2Jcc") {
		t.Fatalf("a control character reached the terminal:\n%q", plain)
	}
	if !strings.Contains(plain, strings.Repeat("n", maxCell-1)+"…") {
		t.Fatalf("a long cell was not cut:\n%s", plain)
	}
	coloured := draw(true, true)
	for _, want := range []string{"\x1b[32mready", "\x1b[31mdown", "\x1b[33mdraining"} {
		if !strings.Contains(coloured, want) {
			t.Fatalf("no %q in:\n%q", want, coloured)
		}
	}
	if ansi.ReplaceAllString(coloured, "") != draw(false, true) {
		t.Fatalf("colour moved the columns:\n%s\nvs\n%s", ansi.ReplaceAllString(coloured, ""), draw(false, true))
	}
}

func TestColourOnlyOnATerminal(t *testing.T) {
	var b bytes.Buffer
	for _, tc := range []struct {
		name    string
		noColor bool
		env     string
	}{{"a buffer", false, ""}, {"--no-color", true, ""}, {"NO_COLOR", false, "1"}} {
		g := &globals{io: IO{Out: &b, Getenv: func(k string) string {
			if k == "NO_COLOR" {
				return tc.env
			}
			return ""
		}}, noColor: tc.noColor}
		if g.colorOn() {
			t.Errorf("%s: colour on", tc.name)
		}
	}
}
