//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// TestDiskUnwritable puts n3's data directory on an ext4 file system (a
// loop device over an image on a tmpfs the test mounts) and makes it fail
// as a failing disk does: ext4 aborts its journal and turns read-only, so
// every write, through files already open too, fails. (A tmpfs cannot be
// remounted read-only while files are open for writing.) Then the leader
// is killed, so n3 must write a new raft term: raft panics on a term it
// cannot save, and n3 must not die of it. n3 must say it cannot write,
// go on serving inference, stop cleanly when asked, and, after the
// operator's repair (fsck, mount), come back and catch up without losing
// an acknowledged write.
func TestDiskUnwritable(t *testing.T) {
	var disk *ext4
	f := startFleetWith(t, 3, fleetOptions{args: diskFlags, prepare: func(id, dir string) {
		if id == sick {
			disk = mountExt4(t, dir)
		}
	}})
	defer f.dumpLogs()
	w := startDiskWorkload(t, f)
	leaderNot(t, f, sick)
	f.waitHealthy(60*time.Second, deployment, 3)

	from := time.Now()
	disk.fail(t)
	testwait.For(t, 30*time.Second, sick+" to say it cannot write its data directory", func() bool {
		return strings.Contains(readyzBody(context.Background(), f.url(sick)), "cannot write the data directory")
	})
	detected := time.Since(from)
	newTerm(t, f)
	testwait.For(t, 30*time.Second, sick+" to fail to save the new term", func() bool {
		return strings.Contains(statusWarning(t, f, sick), "raft term and vote failing")
	})
	start := inferMark(w.inf)
	base := appliedOf(t, f, healthyLeader(t, f))
	var applied uint64
	var served, failed int
	testwait.Until(t, 60*time.Second, func() bool {
		served, failed = inferSince(w.inf, sick, start)
		applied = appliedOf(t, f, healthyLeader(t, f))
		return applied >= base+100 && served >= 10
	}, func() string {
		return fmt.Sprintf("the others to commit 100 entries after %d (at %d) and %s to serve 10 requests (%d whole, %d not; in service %v)",
			base, applied, sick, served, failed, f.inService())
	})
	if exited(f, sick) {
		t.Fatalf("%s died of its read-only disk", sick)
	}
	status := statusWarning(t, f, sick)
	if cli := sovraStatus(t, f, sick); !strings.Contains(cli, "cluster: cannot write the data directory") {
		t.Errorf("sovra status on %s does not say its disk fails:\n%s", sick, cli)
	}

	took := stopGently(t, f, sick)
	disk.repair(t)
	f.restart(sick)
	f.waitHealthy(60*time.Second, deployment, 3)
	checkStateConverges(t, f)
	t.Logf("read-only disk: detected after %v; %s lived through a new term and served %d requests whole (%d not) while the others committed; "+
		"it stopped in %v when asked; after fsck it came back and caught up; status said %q",
		detected.Round(time.Millisecond), sick, served, failed, took.Round(time.Millisecond), status)
	w.stop(t)
	w.report(t, f)
}

// newTerm kills the leader and starts it again, so that the cluster
// elects a leader in a new term.
func newTerm(t *testing.T, f *fleet) {
	t.Helper()
	l := healthyLeader(t, f)
	f.kill(l)
	f.restart(l)
	testwait.For(t, 60*time.Second, "a leader after "+l+" restarted", func() bool {
		nl := f.leader([]string{"n1", "n2"})
		return nl != ""
	})
}

func exited(f *fleet, id string) bool {
	p := f.proc(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stopGently sends SIGTERM and waits for the process to end, as systemd
// would before the repair; it returns how long it took.
func stopGently(t *testing.T, f *fleet, id string) time.Duration {
	t.Helper()
	p := f.proc(id)
	p.mu.Lock()
	cmd, done := p.cmd, p.exited
	p.mu.Unlock()
	at := time.Now()
	f.smu.Lock()
	f.serving[id] = false
	f.smu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s of SIGTERM", id)
	}
	took := time.Since(at)
	if code := cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(logsOf(f, id), "panic") {
		t.Errorf("%s stopped with exit code %d (panic in its logs: %v)", id, code, strings.Contains(logsOf(f, id), "panic"))
	}
	p.mu.Lock()
	p.cmd = nil
	p.killedAt = append(p.killedAt, at)
	p.mu.Unlock()
	return took
}

// ext4 is an ext4 file system on a loop device over an image file.
type ext4 struct {
	dir, image, dev string
}

// mountExt4 makes a 48 MiB ext4 file system, mounts it on dir with
// errors=remount-ro, and undoes it all at cleanup. It skips the test
// where loop devices, mkfs.ext4 or mounting are not available.
func mountExt4(t testing.TB, dir string) *ext4 {
	t.Helper()
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the unwritable-disk test needs %s: %v", tool, err)
		}
	}
	img := mountTmpfs(t, filepath.Join(filepath.Dir(dir), "image"), 64<<20)
	d := &ext4{dir: dir, image: filepath.Join(img.dir, "ext4.img")}
	if err := os.WriteFile(d.image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.image, 48<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", d.image).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device here: losetup: %v: %s", err, out)
	}
	d.dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", d.dev).Run() })
	if out, err := exec.Command("mkfs.ext4", "-q", d.dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d.mount(t)
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	if _, err := os.Stat(d.trigger()); err != nil {
		t.Skipf("this kernel cannot make ext4 fail on demand (%v)", err)
	}
	return d
}

func (d *ext4) trigger() string {
	return filepath.Join("/sys/fs/ext4", filepath.Base(d.dev), "trigger_fs_error")
}

func (d *ext4) mount(t testing.TB) {
	t.Helper()
	if err := syscall.Mount(d.dev, d.dir, "ext4", 0, "errors=remount-ro"); err != nil {
		t.Skipf("mounting ext4 is not permitted here (%v)", err)
	}
	if err := os.Chmod(d.dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

// fail makes the file system fail: ext4 aborts its journal and remounts
// itself read-only.
func (d *ext4) fail(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(d.trigger(), []byte("1"), 0); err != nil {
		t.Fatalf("trigger an ext4 error: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("the file system still takes writes after its error: %v", err)
	}
}

// repair is the operator's: unmount, fsck, mount again.
func (d *ext4) repair(t testing.TB) {
	t.Helper()
	if err := syscall.Unmount(d.dir, 0); err != nil {
		t.Fatalf("unmount %s: %v", d.dir, err)
	}
	out, err := exec.Command("e2fsck", "-fy", d.dev).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() >= 4) {
		t.Fatalf("e2fsck: %v: %s", err, out)
	}
	d.mount(t)
	t.Logf("fsck: %s", firstLine(string(out)))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return fmt.Sprintf("%.200s", line)
}
