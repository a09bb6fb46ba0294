package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testnode"
)

// EnvRequireNode, when "1", turns missing Node.js tooling (node, npm or the
// installed packages of test/node) into a test failure instead of a skip.
const EnvRequireNode = "SOVRA_REQUIRE_NODE"

// nodeSuiteTimeout bounds one run of the JavaScript suite.
const nodeSuiteTimeout = 5 * time.Minute

// TestNodeSDKs runs the JavaScript suite of test/node, which drives a node
// with the official OpenAI and Ollama npm clients, once per backend kind:
// the simulator always, and the real Ollama server when its binary is
// there.
func TestNodeSDKs(t *testing.T) {
	dir := nodeSuiteDir(t)
	eachTarget(t, func(t *testing.T, tg target) {
		n := testnode.Start(t, tg.ollamaURL)
		env := map[string]string{
			"SOVRA_URL":         n.URL(),
			"SOVRA_TOKEN":       testnode.Token,
			"SOVRA_CHAT_MODEL":  tg.chat,
			"SOVRA_EMBED_MODEL": tg.embed,
			"SOVRA_THINK_MODEL": tg.think,
		}
		if tg.tools != "" {
			env["SOVRA_EXPECT_TOOLS"], env["SOVRA_TOOLS_MODEL"] = "1", tg.tools
		}
		if !tg.toolsFollowUp {
			env["SOVRA_TOOLS_FOLLOWUP"] = "0"
		}
		runNodeSuite(t, dir, env)
	})
}

// nodeSuiteDir returns the absolute path of test/node, skipping the test
// (or failing it when SOVRA_REQUIRE_NODE=1) when node, npm or the installed
// packages are missing.
func nodeSuiteDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "test", "node")
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(EnvRequireNode) == "1" {
			t.Fatalf(format+" (%s=1 forbids skipping)", append(args, EnvRequireNode)...)
		}
		t.Skipf(format, args...)
	}
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing("%s is not installed: the Node.js SDK checks need Node.js 20 or later", bin)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		missing("test/node/node_modules is missing: run `npm ci --prefix test/node` first")
	}
	return dir
}

// runNodeSuite runs `npm test` in dir with the given settings added to the
// environment, and fails the test with the suite's output if it fails.
func runNodeSuite(t *testing.T, dir string, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeSuiteTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, "npm", "test")
	cmd.Dir = dir
	cmd.Env = suiteEnv(os.Environ(), env)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// npm starts a shell that starts node, which starts one process per
	// test file: on timeout kill the whole group, not just npm.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second

	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the Node.js SDK suite did not finish within %v; output:\n%s", nodeSuiteTimeout, out.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Fatalf("the Node.js SDK suite failed (%v) against %s; output:\n%s", err, env["SOVRA_URL"], out.String())
	case err != nil:
		t.Fatalf("run npm test: %v\n%s", err, out.String())
	}
	t.Logf("Node.js SDK suite passed in %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
}

// suiteEnv is the parent environment without any SOVRA_* settings of the
// suite (so a developer's shell cannot change what is checked), plus set.
// Proxies are bypassed for the loopback node.
func suiteEnv(parent []string, set map[string]string) []string {
	out := make([]string, 0, len(parent)+len(set)+2)
	for _, kv := range parent {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SOVRA_") || strings.EqualFold(k, "no_proxy") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return append(out, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}
