//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testwait"
)

// diskFlags make raft snapshot, compact and rotate its log files within
// seconds, so that a disk fault meets every kind of write sovra makes.
var diskFlags = []string{"--raft-segment-size", "262144", "--raft-snapshot-threshold", "64",
	"--raft-snapshot-interval", "1s", "--raft-trailing-logs", "32"}

// sick is the node whose disk the tests break.
const sick = "n3"

// TestDiskFull puts n3's data directory on a small tmpfs and fills it
// under inference and admin writes: nearly (room for small writes but
// not for the raft log's next file) and wholly while n3 follows, then
// wholly while it leads, and frees it each time. n3 must say it cannot write (logs,
// /readyz, sovra status), go on serving inference, and catch up once
// space is free; the others go on committing; no acknowledged write is
// lost; its log stays readable (it restarts at the end).
func TestDiskFull(t *testing.T) {
	var disk *tmpfs
	f := startFleetWith(t, 3, fleetOptions{args: diskFlags, prepare: func(id, dir string) {
		if id == sick {
			disk = mountTmpfs(t, dir, 16<<20)
		}
	}})
	defer f.dumpLogs()
	w := startDiskWorkload(t, f)

	leaderNot(t, f, sick)
	f.waitHealthy(60*time.Second, deployment, 3) // every node serves again
	// Nearly full: room for small writes, not for the raft log's next
	// file (256 KiB here).
	nearly := sickWhile(t, f, w, "nearly full, following", func() { disk.fill(t); disk.shrink(t, 128<<10) }, func() { disk.free(t) })
	full := sickWhile(t, f, w, "full, following", func() { disk.fill(t) }, func() { disk.free(t) })

	makeLeader(t, f, sick)
	f.waitHealthy(60*time.Second, deployment, 3)
	logged := len(logsOf(f, sick))
	fullLead := sickWhile(t, f, w, "full, leading", func() { disk.fill(t) }, func() { disk.free(t) })
	handedOver(t, logsOf(f, sick)[logged:])

	w.stop(t)
	leftovers(t, filepath.Join(disk.dir, "raft", "snapshots"))
	f.kill(sick)
	f.restart(sick)
	f.waitHealthy(60*time.Second, deployment, 3)
	checkStateConverges(t, f)
	t.Logf("%s restarted on its log and caught up", sick)
	w.report(t, f, nearly, full, fullLead)
}

// handedOver checks that n3, leading when its disk filled, handed the
// leadership over at its first failed write, before an append of its
// failed (unless that append was the first write to fail: then raft
// stepped down by itself).
func handedOver(t *testing.T, logs string) {
	t.Helper()
	first := strings.Index(logs, `"msg":"cannot write the data directory`)
	if first < 0 {
		t.Errorf("%s, leading, logged no failed write", sick)
		return
	}
	if strings.Contains(logs[first:min(first+600, len(logs))], `"write":"raft log"`) {
		t.Logf("%s, leading: its first failed write was an append; raft stepped down", sick)
		return
	}
	over, failed := strings.Index(logs, "handing the leadership over"), strings.Index(logs, "failed to commit logs")
	if over < 0 || failed >= 0 && failed < over {
		t.Errorf("%s, leading, did not hand the leadership over before an append of its failed", sick)
	}
}

// leftovers fails the test when a failed snapshot left its temporary
// directory behind.
func leftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("a failed snapshot left %s in %s", e.Name(), dir)
		}
	}
}

// tmpfs is a small file system the test mounts as a node's data
// directory, to fill it.
type tmpfs struct {
	dir    string
	filler string
}

// mountTmpfs mounts a tmpfs of size bytes on dir; it skips the test when
// mounting is not permitted, and unmounts at cleanup.
func mountTmpfs(t testing.TB, dir string, size int64) *tmpfs {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("mounting a tmpfs is not permitted here (%v): the disk-fault test needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &tmpfs{dir: dir, filler: filepath.Join(dir, "filler")}
}

// fill writes a file until the file system is full.
func (fs *tmpfs) fill(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(fs.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		_, err := f.Write(buf)
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// shrink frees about n bytes of the filler.
func (fs *tmpfs) shrink(t testing.TB, n int64) {
	t.Helper()
	st, err := os.Stat(fs.filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fs.filler, max(st.Size()-n, 0)); err != nil {
		t.Fatal(err)
	}
}

// free removes the filler.
func (fs *tmpfs) free(t testing.TB) {
	t.Helper()
	if err := os.Remove(fs.filler); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// episode is what one disk fault showed.
type episode struct {
	name       string
	detected   time.Duration // from the fault to /readyz saying so
	committed  uint64        // entries the others committed while it lasted
	behind     uint64        // how far n3 fell behind
	served     int           // inference requests n3 answered whole while it lasted
	failed     int           // ... and those that did not
	caughtUp   time.Duration // from the repair to n3 ready and caught up
	statusText string
}

// sickWhile breaks n3's disk, checks what must hold while it is broken,
// repairs it and waits for n3 to catch up.
func sickWhile(t *testing.T, f *fleet, w *diskWorkload, name string, breakIt, repair func()) episode {
	t.Helper()
	e := episode{name: name}
	from := time.Now()
	breakIt()
	testwait.For(t, 30*time.Second, sick+" to say it cannot write its data directory", func() bool {
		return strings.Contains(readyzBody(context.Background(), f.url(sick)), "cannot write the data directory")
	})
	e.detected = time.Since(from)
	e.statusText = statusWarning(t, f, sick)
	if cli := sovraStatus(t, f, sick); !strings.Contains(cli, "! cluster: cannot write the data directory") {
		t.Errorf("%s: sovra status on %s does not say its disk fails:\n%s", name, sick, cli)
	}
	start := inferMark(w.inf)
	base := appliedOf(t, f, healthyLeader(t, f))
	// n3 appends into the log file it has until it needs a new one; then
	// it falls behind.
	var applied, behind uint64
	var served, failed int
	testwait.Until(t, 60*time.Second, func() bool {
		served, failed = inferSince(w.inf, sick, start)
		applied, behind = appliedOf(t, f, healthyLeader(t, f)), appliedOf(t, f, sick)
		return applied >= base+100 && applied >= behind+100 && served >= 10
	}, func() string {
		return fmt.Sprintf("the others to commit 100 entries after %d (at %d), %s to fall 100 behind (at %d) and to serve 10 requests (%d whole, %d not)",
			base, applied, sick, behind, served, failed)
	})
	e.behind = applied - behind
	e.committed = appliedOf(t, f, healthyLeader(t, f)) - base
	e.served, e.failed = inferSince(w.inf, sick, start)
	if bad := w.sick.unclearBetween(from, time.Now()); len(bad) > 0 {
		t.Errorf("%s: writes through %s while its disk failed were answered without a clear reason: %q", name, sick, bad)
	}
	if !strings.Contains(logsOf(f, sick), "cannot write the data directory") {
		t.Errorf("%s: %s's logs do not say its disk fails", name, sick)
	}
	repaired := time.Now()
	repair()
	target := appliedOf(t, f, healthyLeader(t, f))
	testwait.For(t, 60*time.Second, sick+" ready and caught up", func() bool {
		return readyz(context.Background(), f.url(sick)) == nil && appliedOf(t, f, sick) >= target
	})
	e.caughtUp = time.Since(repaired)
	t.Logf("%s: detected after %v; the others committed %d entries meanwhile, %s fell %d behind and served %d requests whole (%d not); caught up %v after the repair; status said %q",
		name, e.detected.Round(time.Millisecond), e.committed, sick, e.behind, e.served, e.failed, e.caughtUp.Round(time.Millisecond), e.statusText)
	return e
}

// sovraStatus runs `sovra status` against a node, as an operator would.
func sovraStatus(t *testing.T, f *fleet, id string) string {
	t.Helper()
	cmd := exec.Command(f.bin, "status", "--addr", f.url(id), "--token-file", f.admin)
	cmd.Env = append(os.Environ(), "SOVRA_CONFIG=", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("sovra status on %s: %v\n%s", id, err, out)
	}
	return string(out)
}

// healthyLeader is the leader as a node other than n3 sees it.
func healthyLeader(t *testing.T, f *fleet) string {
	t.Helper()
	var l string
	testwait.For(t, 30*time.Second, "a leader", func() bool {
		l = f.leader([]string{"n1", "n2"})
		return l != ""
	})
	return l
}

func appliedOf(t *testing.T, f *fleet, id string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := f.client(id).ClusterStatus(ctx)
	if err != nil {
		return 0
	}
	return st.AppliedIndex
}

func statusWarning(t *testing.T, f *fleet, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := f.client(id).ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	return st.Warning
}

// makeLeader moves the leadership to id by killing other leaders.
func makeLeader(t *testing.T, f *fleet, id string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		l := f.leader(f.ids)
		if l == id {
			return
		}
		if attempt == 20 {
			t.Fatalf("%s did not become the leader", id)
		}
		f.kill(l)
		testwait.For(t, 30*time.Second, "a new leader", func() bool {
			nl := f.leader(f.alive())
			return nl != "" && nl != l
		})
		f.restart(l)
		f.waitNodes(60 * time.Second)
	}
}

func readyzBody(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// diskWorkload is the traffic of the disk tests: inference to every
// node, the suite's admin writers, and a writer that goes through n3
// only and keeps every answer.
type diskWorkload struct {
	inf    *inference
	adm    *admin
	keys   []string
	sick   *answers
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startDiskWorkload(t *testing.T, f *fleet) *diskWorkload {
	t.Helper()
	f.waitNodes(60 * time.Second)
	n := 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client("n1").CreateDeployment(client.WithIdempotencyKey(ctx, "disk-setup"),
		client.DeploymentRequest{Name: deployment, Model: "llama3.2:1b", Replicas: &n}); err != nil {
		t.Fatal(err)
	}
	f.waitHealthy(60*time.Second, deployment, n)
	w := &diskWorkload{inf: newInference(f, deployment), adm: newAdmin(f), keys: adminKeys(t, f), sick: &answers{}}
	wctx, stop := context.WithCancel(context.Background())
	w.cancel = stop
	for i := range 2 {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.inf.run(wctx, uint64(i)) }()
	}
	for i, k := range w.keys {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.adm.writer(wctx, i, k) }()
	}
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.sick.run(wctx, f, sick) }()
	return w
}

func (w *diskWorkload) stop(t *testing.T) {
	w.cancel()
	w.wg.Wait()
}

// report checks the admin history and prints the figures.
func (w *diskWorkload) report(t *testing.T, f *fleet, episodes ...episode) {
	t.Helper()
	checkAdmin(t, f, w.adm, w.keys)
	outcomes, lost := inferOutcomes(f, w.inf)
	if len(lost) > 0 {
		t.Errorf("%d inference requests lost (no end, no error, or cut while their node lived): %q", len(lost), lost)
	}
	logs := logsOf(f, sick)
	t.Logf("inference requests %v; admin writes %d (acknowledged: all found; outcome unknown %d), reads %d; writes through %s: %s; "+
		"%s handed the leadership over %d times, reopened its raft log %d times",
		outcomes, w.adm.writes, w.adm.unknown, w.adm.reads, sick, w.sick.summary(),
		sick, strings.Count(logs, "handing the leadership over"), strings.Count(logs, "reopened the raft log"))
	for _, e := range episodes {
		if e.served == 0 {
			t.Errorf("%s: %s served no inference while its disk failed", e.name, sick)
		}
	}
}

// inferOutcomes counts the requests by outcome, and lists those lost: a
// stream ended with neither its end nor an error, or a connection that
// broke while its node lived.
func inferOutcomes(f *fleet, in *inference) (map[string]int, []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := map[string]int{}
	var lost []string
	for _, r := range in.done {
		n[r.outcome]++
		if r.outcome == outLost || ((r.outcome == outCut || r.outcome == outRefused) && !f.killedDuring(r)) {
			lost = append(lost, fmt.Sprintf("%s via %s: %.200s", r.outcome, r.entry, r.detail))
		}
	}
	return n, lost
}

// inferMark is how many requests have ended so far.
func inferMark(in *inference) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.done)
}

// inferSince counts the requests entering node id (every node: "") that
// ended after the first from, whole and not (hang-ups left out).
func inferSince(in *inference, id string, from int) (ok, notOK int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range in.done[from:] {
		switch {
		case id != "" && r.entry != id, r.outcome == outHungUp:
		case r.outcome == outOK:
			ok++
		default:
			notOK++
		}
	}
	return ok, notOK
}

// answers is a writer that scales the deployment's replicas between 2 and
// 3 through one node and keeps what each write was answered, and when.
type answers struct {
	mu  sync.Mutex
	got []answered
}

type answered struct {
	at   time.Time
	code string // "ok", or the error's status and code
}

func (a *answers) run(ctx context.Context, f *fleet, via string) {
	for i := 0; ctx.Err() == nil; i++ {
		wctx, cancel := context.WithTimeout(client.WithIdempotencyKey(ctx, fmt.Sprintf("disk-scale-%d", i)), 6*time.Second)
		_, err := f.client(via).ScaleDeployment(wctx, deployment, 3)
		cancel()
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		a.got = append(a.got, answered{time.Now(), codeOf(err)})
		a.mu.Unlock()
		if err != nil {
			select { // pace a client that is refused
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// codeOf is "ok", or an error's status and code.
func codeOf(err error) string {
	var ce *client.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ce):
		return fmt.Sprintf("%d %s", ce.Status, ce.Code)
	}
	return "transport: " + err.Error()
}

// clear are the answers that say what became of a write through a node
// whose disk fails: done, refused by that node for its disk, or refused
// while the leadership moved.
var clear = map[string]bool{"ok": true, "503 storage_unavailable": true, "503 no_leader": true}

// unclearBetween lists the answers between from and to that are not clear:
// an internal error, or a deadline that ran out while the node waited for
// a state it could not reach.
func (a *answers) unclearBetween(from, to time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var bad []string
	for _, g := range a.got {
		if g.at.After(from) && g.at.Before(to) && !clear[g.code] {
			bad = append(bad, g.code)
		}
	}
	return bad
}

func (a *answers) summary() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := map[string]int{}
	for _, g := range a.got {
		n[g.code]++
	}
	b, _ := json.Marshal(n)
	return string(b)
}
