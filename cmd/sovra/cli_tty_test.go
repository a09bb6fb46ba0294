package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testbin"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/testwait"
)

// TestCLIDeployInTerminal runs `sovra deploy` in a real terminal (a tmux
// pane) while the simulated Ollamas pull the model, and checks the live
// view: a redrawn line per replica with its pull's percent, bytes and
// speed, then every replica ready and the final line, exit code 0.
func TestCLIDeployInTerminal(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("SOVRA_REQUIRE_TMUX") == "1" {
			t.Fatal("tmux is not installed (SOVRA_REQUIRE_TMUX=1)")
		}
		t.Skip("tmux is not installed")
	}
	bin := testbin.Sovra(t)
	c := pullingNodes(t, 4*time.Second)
	dir := t.TempDir()
	sock := filepath.Join(dir, "tmux.sock")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-f", "/dev/null", "new-session", "-d", "-s", "cli", "-x", "150", "-y", "30",
		"-e", "SOVRA_ADDR="+c.URL("a"), "-e", "SOVRA_TOKEN="+testcluster.Token, "-e", "HOME="+dir, "-e", "NO_COLOR=",
		bin+" deploy llama3.1:8b --replicas 2; echo EXIT=$?; sleep 600")
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })
	pane := func() string { return run("capture-pane", "-p", "-t", "cli") }

	pulling := regexp.MustCompile(`(?m)^([abc]) +pulling +\[.*\] +\d+%  [\d.]+ [KMG]iB / [\d.]+ GiB`)
	var frame string
	testwait.Until(t, 60*time.Second, func() bool {
		frame = pane()
		return len(pulling.FindAllString(frame, -1)) == 2
	}, func() string { return "a pulling line per replica; last frame:\n" + frame })
	t.Logf("while pulling:\n%s", frame)

	testwait.Until(t, 60*time.Second, func() bool {
		frame = pane()
		return strings.Contains(frame, "EXIT=")
	}, func() string { return "the command to end; last frame:\n" + frame })
	t.Logf("at the end:\n%s", frame)
	if !strings.Contains(frame, "EXIT=0") || !regexp.MustCompile(`deployment llama3.1:8b ready: 2/2 replicas on [abc],[abc]`).MatchString(frame) {
		t.Fatalf("no ready line and exit 0:\n%s", frame)
	}
	ready := regexp.MustCompile(`(?m)^([abc]) +ready +\[`).FindAllString(frame, -1)
	if len(ready) != 2 {
		t.Fatalf("want a ready line per replica in the final frame:\n%s", frame)
	}
	if strings.Count(frame, "pulling") != 0 {
		t.Fatalf("progress lines were not redrawn in place (a pulling line is left):\n%s", frame)
	}
}
