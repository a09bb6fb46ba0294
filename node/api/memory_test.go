package api

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// helper is the API served by a process of its own (see TestMain), so that
// its memory can be measured apart from the tests'.
type helper struct {
	url string
	pid int
}

func startHelper(t *testing.T) helper {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a process of its own")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper did not say its address: %v", err)
	}
	return helper{url: "http://" + strings.TrimSpace(addr), pid: cmd.Process.Pid}
}

// memory is what the helper holds at one moment.
type memory struct {
	rss, peakRSS int64 // VmRSS and VmHWM, in bytes
	allocated    int64 // bytes allocated since the process started
	fds          int
}

func (h helper) memory(t *testing.T) memory {
	t.Helper()
	var m memory
	m.rss, m.peakRSS = procStatus(t, h.pid, "VmRSS:"), procStatus(t, h.pid, "VmHWM:")
	fams := scrape(t, h.url)
	m.allocated = int64(value(t, fams, "go_memstats_alloc_bytes_total", map[string]string{}))
	m.fds = int(value(t, fams, "process_open_fds", map[string]string{}))
	return m
}

// procStatus reads a size field of /proc/<pid>/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// growth is how much more memory the helper reached, at its peak, and
// allocated since before. Under the race detector the peak is not
// measured (0): its shadow memory inflates RSS.
func (before memory) growth(after memory) (peak, allocated int64) {
	if !raceEnabled {
		peak = after.peakRSS - before.rss
	}
	return peak, after.allocated - before.allocated
}

const mb = 1 << 20

// TestSlowUploadsKeepMemoryBounded opens 50 connections that each declare
// a 16 MiB body and send one byte of it: the server must not allocate
// what they declare.
func TestSlowUploadsKeepMemoryBounded(t *testing.T) {
	const conns, declared, bound = 50, 16 << 20, 150 * mb
	h := startHelper(t)
	addr := strings.TrimPrefix(h.url, "http://")
	before := h.memory(t)
	var open []net.Conn
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		fmt.Fprintf(c, "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", declared)
	}
	testwait.For(t, 10*time.Second, "the server to accept every upload", func() bool { return h.memory(t).fds >= before.fds+conns })
	// The server reads what was sent (the headers and one byte) before it
	// sees the end of the connection: once it closed them all, it has
	// done whatever it does on reading such headers.
	for _, c := range open {
		_ = c.Close()
	}
	testwait.For(t, 10*time.Second, "the server to close the uploads", func() bool { return h.memory(t).fds <= before.fds })
	peak, allocated := before.growth(h.memory(t))
	t.Logf("%d slow uploads of %d MiB declared: peak RSS growth %.1f MB, allocated %.1f MB", conns, declared>>20, float64(peak)/mb, float64(allocated)/mb)
	if peak > bound || allocated > bound {
		t.Errorf("memory grew past %d MB", bound/mb)
	}
}

// TestManyTinyMessagesKeepMemoryBounded sends one body, just under the
// default body limit, of tiny chat messages: it must be refused before it
// is decoded into hundreds of thousands of messages.
func TestManyTinyMessagesKeepMemoryBounded(t *testing.T) {
	const bound = 64 * mb
	h := startHelper(t)
	var b strings.Builder
	b.WriteString(`{"model":"m","stream":false,"messages":[`)
	msg := `{"role":"user","content":""}`
	for b.Len()+2*len(msg)+4 <= DefaultConfig().BodyLimit {
		b.WriteString(msg)
		b.WriteByte(',')
	}
	b.WriteString(msg + `]}`)
	before := h.memory(t)
	status, body := post(t, h.url, "/api/chat", b.String())
	peak, allocated := before.growth(h.memory(t))
	t.Logf("one %.1f MB body of %d messages: status %d, peak RSS growth %.1f MB, allocated %.1f MB",
		float64(b.Len())/mb, strings.Count(b.String(), `"role"`), status, float64(peak)/mb, float64(allocated)/mb)
	if status != 400 {
		t.Errorf("status %d, want 400: %.200s", status, body)
	}
	if peak > bound || allocated > bound {
		t.Errorf("memory grew past %d MB", bound/mb)
	}
}

// TestLargestAcceptedBodyKeepsMemoryBounded sends the largest chat the
// default limits accept (a body just under the limit, in as many messages
// as allowed): decoding and forwarding it must cost a small multiple of
// its size.
func TestLargestAcceptedBodyKeepsMemoryBounded(t *testing.T) {
	h := startHelper(t)
	cfg := DefaultConfig()
	head, tail := `{"model":"m","stream":false,"messages":[`, `]}`
	shell := `{"role":"user","content":""},`
	n := cfg.MaxMessages
	each := (cfg.BodyLimit-len(head)-len(tail))/n - len(shell) - 1
	var b strings.Builder
	b.WriteString(head)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"role":"user","content":"`)
		b.WriteString(strings.Repeat("w", each))
		b.WriteString(`"}`)
	}
	b.WriteString(tail)
	bound := int64(4 * b.Len())
	if raceEnabled { // sync.Pool drops what it holds at random
		bound = int64(6 * b.Len())
	}
	before := h.memory(t)
	status, body := post(t, h.url, "/api/chat", b.String())
	peak, allocated := before.growth(h.memory(t))
	t.Logf("one %.1f MB body of %d messages: status %d, peak RSS growth %.1f MB, allocated %.1f MB (%.1fx the body)",
		float64(b.Len())/mb, n, status, float64(peak)/mb, float64(allocated)/mb, float64(allocated)/float64(b.Len()))
	if status != 200 {
		t.Fatalf("status %d, want 200: %.200s", status, body)
	}
	if peak > bound || allocated > bound {
		t.Errorf("memory grew past %d MB", bound/mb)
	}
}
