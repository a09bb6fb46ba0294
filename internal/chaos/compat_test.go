package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/testbin"
	"github.com/sovra/sovra/internal/testwait"
)

// The next version's command types, as the sovra_next build numbers them
// (cluster/state/next.go): after every type this build knows.
var (
	oldLevel     = int(state.Level())
	typeHint     = oldLevel + 1 // ignorable
	typePriority = oldLevel + 2 // older versions may not skip it
)

// TestMixedVersions runs a cluster in the middle of a rolling upgrade: n1
// and n2 run a build that plays the next version (build tag sovra_next:
// two command types more), n3 runs this one. The old node skips the
// ignorable new command with a warning and stays identical; the new
// command it may not skip is refused with upgrade_required while it runs,
// and goes through once it is upgraded. Downgraded again, it stops with
// an error that says to upgrade it, and the others go on; upgraded, it
// catches up. An old node cannot join a cluster whose state holds the new
// command. A snapshot the old version wrote restores on the new one.
func TestMixedVersions(t *testing.T) {
	oldBin, nextBin := testbin.Sovra(t), testbin.SovraTags(t, "sovra_next")
	f := startFleetWith(t, 3, fleetOptions{bins: map[string]string{"n1": nextBin, "n2": nextBin}})
	defer f.dumpLogs()
	f.waitNodes(60 * time.Second)
	deploy(t, f, "n1", "chat")
	waitLevels(t, f, map[string]int{"n1": typePriority, "n2": typePriority, "n3": oldLevel})

	ignorableIsSkipped(t, f)
	snapshotOfOldRestoresOnNext(t, f)
	leaderNot(t, f, "n3")
	refusedWhileOldMember(t, f)

	upgrade(t, f, "n3", nextBin)
	waitLevels(t, f, map[string]int{"n3": typePriority})
	out := adminCall(t, f, "n1", "/next/priority", `{"name":"chat","priority":7}`)
	if out.status != http.StatusOK {
		t.Fatalf("the new command with every member upgraded: %d %s", out.status, out.body)
	}
	t.Logf("every member upgraded: the new command is applied: %s", out.body)
	waitPriority(t, f, f.ids, 7)
	checkStateConverges(t, f)

	downgradeStops(t, f, oldBin)
	upgrade(t, f, "n3", nextBin)
	f.waitNodes(60 * time.Second)
	waitReplicas(t, f, f.ids, 2)
	checkStateConverges(t, f)

	oldCannotJoin(t, f)
}

// ignorableIsSkipped: the old node skips the hint with a warning; the
// states stay identical.
func ignorableIsSkipped(t *testing.T, f *fleet) {
	t.Helper()
	out := adminCall(t, f, "n1", "/next/hint", `{}`)
	if out.status != http.StatusOK {
		t.Fatalf("hint: %d %s", out.status, out.body)
	}
	var o state.Outcome
	if err := json.Unmarshal(out.body, &o); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, f, f.ids, o.Index)
	want := fmt.Sprintf(`"type":"%d","index":%d`, typeHint, o.Index)
	testwait.For(t, 10*time.Second, "n3 to warn that it skipped the hint", func() bool { return strings.Contains(logsOf(f, "n3"), want) })
	for _, id := range []string{"n1", "n2"} {
		if strings.Contains(logsOf(f, id), "skipped a command") {
			t.Errorf("%s, which knows the hint, says it skipped it", id)
		}
	}
	t.Logf("ignorable command type %d at index %d: applied by the leader (%s), skipped with a warning by n3", typeHint, o.Index, out.body)
	checkStateConverges(t, f)
}

// refusedWhileOldMember: the command older versions may not skip is
// refused, naming the old member, on any node it is sent to, and changes
// nothing anywhere.
func refusedWhileOldMember(t *testing.T, f *fleet) {
	t.Helper()
	for _, via := range []string{"n1", "n2"} {
		out := adminCall(t, f, via, "/next/priority", `{"name":"chat","priority":5}`)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(out.body, &e)
		gate := fmt.Sprintf("needs every member to run a version that knows command type %d, and n3 (sovra", typePriority)
		if out.status != http.StatusConflict || e.Error.Code != "upgrade_required" || !strings.Contains(e.Error.Message, gate) {
			t.Fatalf("the new command through %s with n3 old: %d %s; want 409 upgrade_required saying %q", via, out.status, out.body, gate)
		}
		t.Logf("refused through %s: %s", via, e.Error.Message)
	}
	restoreRefused(t, f)
	waitPriority(t, f, f.ids, 0)
	if strings.Contains(logsOf(f, "n3"), "stopped applying") {
		t.Fatal("n3 met the refused command")
	}
}

// restoreRefused: a snapshot that holds the new command (its command
// level says so) is not installed while n3 could not read it.
func restoreRefused(t *testing.T, f *fleet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap, err := f.client("n1").SaveSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version int            `json:"version"`
		State   map[string]any `json:"state"`
	}
	if err := json.Unmarshal(snap, &doc); err != nil {
		t.Fatal(err)
	}
	doc.State["command_level"] = typePriority
	newer, _ := json.Marshal(doc)
	err = f.client("n1").RestoreSnapshot(ctx, newer, true)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict || !strings.Contains(err.Error(), "restoring this snapshot needs every member") {
		t.Fatalf("restoring a snapshot that holds command type %d with n3 old: %v; want 409 naming the gate", typePriority, err)
	}
	t.Logf("restore refused: %v", err)
}

// snapshotOfOldRestoresOnNext: a snapshot n3 (this version) writes is
// restored through n1 (the next one); every node then holds it.
func snapshotOfOldRestoresOnNext(t *testing.T, f *fleet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap, err := f.client("n3").SaveSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.client("n1").RestoreSnapshot(ctx, snap, true); err != nil {
		t.Fatalf("the next version restores a snapshot of this one: %v", err)
	}
	t.Logf("a snapshot of %d bytes written by this version restored through the next one", len(snap))
	f.waitNodes(60 * time.Second)
	checkStateConverges(t, f)
}

// downgradeStops: n3, back on the old version, meets the new command in
// its log and stops with an error that says to upgrade it; n1 and n2 go
// on committing.
func downgradeStops(t *testing.T, f *fleet, oldBin string) {
	t.Helper()
	upgrade(t, f, "n3", oldBin)
	p := f.proc("n3")
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("n3, downgraded, did not stop at the command it does not know")
	}
	logs := logsOf(f, "n3")
	for _, want := range []string{"stopped applying the replicated log", fmt.Sprintf("command type %d", typePriority), "Upgrade this node"} {
		if !strings.Contains(logs, want) {
			t.Errorf("n3's logs do not say %q", want)
		}
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("n3 exited with %d, want 1", code)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	t.Log("n3 downgraded: stopped, exit code 1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client("n1").ScaleDeployment(client.WithIdempotencyKey(ctx, "compat-scale"), "chat", 2); err != nil {
		t.Fatalf("n1 and n2 cannot commit while n3 is stopped: %v", err)
	}
	waitReplicas(t, f, []string{"n1", "n2"}, 2)
}

// oldCannotJoin: a new node of the old version is refused and stops,
// saying why.
func oldCannotJoin(t *testing.T, f *fleet) {
	t.Helper()
	f.addNode("x4") // the suite's build: this version
	p := f.proc("x4")
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("an old node joined a cluster whose state holds a command it does not know")
	}
	want := fmt.Sprintf("holds commands up to type %d", typePriority)
	if logs := logsOf(f, "x4"); !strings.Contains(logs, want) || !strings.Contains(logs, "upgrade it") {
		t.Fatalf("x4 stopped without saying why (%q):\n%s", want, logs)
	}
	if !isNotMember(f, "n1", "x4") {
		t.Fatal("x4 is a member")
	}
	t.Log("an old node is refused at join and stops")
}

// upgrade restarts a node on another binary, keeping its data.
func upgrade(t *testing.T, f *fleet, id, bin string) {
	t.Helper()
	f.kill(id)
	p := f.proc(id)
	p.mu.Lock()
	p.bin = bin
	p.mu.Unlock()
	f.restart(id)
}

func deploy(t *testing.T, f *fleet, via, name string) {
	t.Helper()
	n := 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client(via).CreateDeployment(client.WithIdempotencyKey(ctx, "compat-"+name),
		client.DeploymentRequest{Name: name, Model: "llama3.2:1b", Replicas: &n}); err != nil {
		t.Fatal(err)
	}
}

// waitLevels waits until the state, as n1 reads it, holds each node's
// command level.
func waitLevels(t *testing.T, f *fleet, want map[string]int) {
	t.Helper()
	testwait.For(t, 30*time.Second, fmt.Sprintf("command levels %v", want), func() bool {
		out := adminGet(f, "n1", "/nodes")
		var body struct {
			Nodes []struct {
				ID           string `json:"id"`
				CommandLevel int    `json:"command_level"`
			}
		}
		if out.status != http.StatusOK || json.Unmarshal(out.body, &body) != nil {
			return false
		}
		got := map[string]int{}
		for _, n := range body.Nodes {
			got[n.ID] = n.CommandLevel
		}
		for id, l := range want {
			if got[id] != l {
				return false
			}
		}
		return true
	})
}

// waitPriority waits until each node's own state gives the deployment
// the priority.
func waitPriority(t *testing.T, f *fleet, ids []string, want int) {
	t.Helper()
	for _, id := range ids {
		testwait.For(t, 30*time.Second, fmt.Sprintf("priority %d on %s", want, id), func() bool {
			ctx, cancel := context.WithTimeout(client.Stale(context.Background()), 2*time.Second)
			defer cancel()
			d, err := f.client(id).Deployment(ctx, "chat")
			return err == nil && d.Priority == want
		})
	}
}

// waitReplicas waits until each node's own state asks the deployment for
// that many replicas.
func waitReplicas(t *testing.T, f *fleet, ids []string, want int) {
	t.Helper()
	for _, id := range ids {
		testwait.For(t, 30*time.Second, fmt.Sprintf("%d replicas wanted on %s", want, id), func() bool {
			ctx, cancel := context.WithTimeout(client.Stale(context.Background()), 2*time.Second)
			defer cancel()
			d, err := f.client(id).Deployment(ctx, "chat")
			return err == nil && d.Replicas == want
		})
	}
}

// leaderNot moves the leadership off a node (by restarting it while it
// leads), so that the next version's leader answers.
func leaderNot(t *testing.T, f *fleet, id string) {
	t.Helper()
	for f.leader(f.ids) == id {
		f.kill(id)
		testwait.For(t, 30*time.Second, "a leader other than "+id, func() bool {
			l := f.leader(f.alive())
			return l != "" && l != id
		})
		f.restart(id)
		f.waitNodes(60 * time.Second)
	}
}

// waitApplied waits until every node applied index.
func waitApplied(t *testing.T, f *fleet, ids []string, index uint64) {
	t.Helper()
	for _, id := range ids {
		testwait.For(t, 30*time.Second, fmt.Sprintf("%s to apply %d", id, index), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st, err := f.client(id).ClusterStatus(ctx)
			return err == nil && st.AppliedIndex >= index
		})
	}
}

func logsOf(f *fleet, id string) string {
	p := f.proc(id)
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.logs.String()
}

// answer is an admin route's status and body.
type answer struct {
	status int
	body   []byte
}

func adminCall(t *testing.T, f *fleet, id, path, body string) answer {
	t.Helper()
	return adminDo(f, id, http.MethodPost, path, body)
}

func adminGet(f *fleet, id, path string) answer { return adminDo(f, id, http.MethodGet, path, "") }

func adminDo(f *fleet, id, method, path, body string) answer {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, f.url(id)+"/admin/v1"+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return answer{status: resp.StatusCode, body: b}
}
