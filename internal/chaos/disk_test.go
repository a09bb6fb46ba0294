package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
)

// tmpfs is a small file system the test mounts as a node's data
// directory, to fill it and make it unwritable.
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
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("mounting a tmpfs is not permitted here (%v): the disk-fault test needs root or CAP_SYS_ADMIN", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &tmpfs{dir: dir, filler: filepath.Join(dir, "filler")}
}

// fill writes a file until the file system is full; it returns the bytes
// written.
func (fs *tmpfs) fill(t testing.TB) int64 {
	t.Helper()
	f, err := os.OpenFile(fs.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// free removes the filler.
func (fs *tmpfs) free(t testing.TB) {
	t.Helper()
	if err := os.Remove(fs.filler); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// readOnly remounts the file system read-only, or writable again.
func (fs *tmpfs) readOnly(t testing.TB, ro bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if ro {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("tmpfs", fs.dir, "tmpfs", flags, ""); err != nil {
		t.Fatalf("remount %s (read-only %v): %v", fs.dir, ro, err)
	}
}

func TestDiskExplore(t *testing.T) {
	var disk *tmpfs
	var once sync.Once
	f := startFleetWith(t, 3, fleetOptions{
		prepare: func(id, dir string) {
			if id == "n3" {
				once.Do(func() { disk = mountTmpfs(t, dir, 16<<20) })
			}
		},
		args: []string{"--raft-segment-size", "262144", "--raft-snapshot-threshold", "64", "--raft-snapshot-interval", "1s", "--raft-trailing-logs", "32"},
	})
	defer f.dumpLogs()
	setupN(t, f, 3)
	inf := newInference(f, deployment)
	adm := newAdmin(f)
	keys := adminKeys(t, f)
	wctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); inf.run(wctx, uint64(i)) }(i)
	}
	for i, k := range keys {
		wg.Add(1)
		go func(i int, k string) { defer wg.Done(); adm.writer(wctx, i, k) }(i, k)
	}
	show := func(what string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := f.client("n3").ClusterStatus(ctx)
		rz := readyzBody(ctx, f.url("n3"))
		lst, _ := f.client("n1").ClusterStatus(ctx)
		var li uint64
		if lst != nil {
			li = lst.AppliedIndex
		}
		var ai uint64
		var warn string
		if st != nil {
			ai, warn = st.AppliedIndex, st.Warning
		}
		t.Logf("%s: n3 applied %d (n1 %d) err=%v warn=%q readyz=%s", what, ai, li, err, warn, rz)
	}
	show("healthy")
	n := disk.fill(t)
	if err := os.Truncate(disk.filler, n-96<<10); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled with %d bytes", n)
	for i := 0; i < 12; i++ {
		time.Sleep(time.Second)
		show(fmt.Sprintf("full +%ds", i+1))
	}
	t.Logf("n3 logs while full:\n%s", logsOf(f, "n3"))
	disk.free(t)
	for i := 0; i < 15; i++ {
		time.Sleep(time.Second)
		show(fmt.Sprintf("freed +%ds", i+1))
	}
	stop()
	wg.Wait()
	t.Logf("n3 logs:\n%s", logsOf(f, "n3"))
	checkStateConverges(t, f)
	checkAdmin(t, f, adm, keys)
}

func setupN(t *testing.T, f *fleet, n int) {
	t.Helper()
	f.waitNodes(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client(f.ids[0]).CreateDeployment(ctxKey(ctx, "disk-setup"), deploymentRequest(n)); err != nil {
		t.Fatal(err)
	}
	f.waitHealthy(60*time.Second, deployment, n)
}

func readyzBody(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

func ctxKey(ctx context.Context, k string) context.Context { return client.WithIdempotencyKey(ctx, k) }

func deploymentRequest(n int) client.DeploymentRequest {
	return client.DeploymentRequest{Name: deployment, Model: "llama3.2:1b", Replicas: &n}
}
