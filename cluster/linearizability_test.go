package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/linreg"
)

// history records operations for porcupine and the writes that were
// acknowledged, and counts what became of every operation tried.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	acked map[string]uint64 // idempotency key -> applied index (keyed writes)
	tally tally
}

// tally counts the operations tried: completed ones were acknowledged
// (writes) or answered (reads); unknown writes may or may not have taken
// effect; failed ones did nothing.
type tally struct {
	reads, writes                  int // attempted
	readsDone, writesDone, unknown int
	readsFailed, writesFailed      int
}

func (t tally) attempted() int { return t.reads + t.writes }
func (t tally) completed() int { return t.readsDone + t.writesDone }
func (t tally) failed() int    { return t.readsFailed + t.writesFailed }

func (t tally) String() string {
	return fmt.Sprintf("%d attempted (%d writes, %d reads): %d completed (%d writes acknowledged, %d reads answered), %d writes unknown, %d failed (%d writes, %d reads)",
		t.attempted(), t.writes, t.reads, t.completed(), t.writesDone, t.readsDone, t.unknown, t.failed(), t.writesFailed, t.readsFailed)
}

// count records the fate of one operation.
func (h *history) count(f func(t *tally)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.tally)
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// write puts a deployment through n and records the outcome: acknowledged,
// unknown (open-ended: it may take effect any time after the call), or
// refused before it reached raft (not recorded: it had no effect).
func (h *history) write(tc *tcluster, client int, n *tnode, key string, value int, idem string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := h.now()
	out, err := n.c.Apply(ctx, putCmd(key, value, idem))
	ret := h.now()
	op := porcupine.Operation{ClientId: client, Input: linreg.Input{Key: key, Write: true, Value: value}, Call: call, Return: ret, Output: linreg.Output{}}
	switch {
	case err == nil:
		h.count(func(t *tally) { t.writes++; t.writesDone++ })
		if idem != "" {
			h.mu.Lock()
			h.acked[idem] = out.Index
			h.mu.Unlock()
		}
	case errors.Is(err, ErrIndeterminate):
		h.count(func(t *tally) { t.writes++; t.unknown++ })
		op.Output, op.Return = linreg.Output{Unknown: true}, math.MaxInt64
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrClosed), errors.Is(err, context.DeadlineExceeded):
		h.count(func(t *tally) { t.writes++; t.writesFailed++ })
		return
	default:
		h.count(func(t *tally) { t.writes++; t.writesFailed++ })
		tc.t.Errorf("write %s=%d via %s: %v", key, value, n.id, err)
		return
	}
	h.add(op)
}

func (h *history) read(client int, n *tnode, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := h.now()
	got := 0
	err := n.c.Read(ctx, false, func(s *state.State) {
		if d, ok := s.Deployments[key]; ok {
			got = d.Replicas
		}
	})
	if err != nil {
		h.count(func(t *tally) { t.reads++; t.readsFailed++ })
		return // a failed read observed nothing
	}
	h.count(func(t *tally) { t.reads++; t.readsDone++ })
	h.add(porcupine.Operation{ClientId: client, Input: linreg.Input{Key: key}, Call: call, Output: linreg.Output{Value: got}, Return: h.now()})
}

// chaos injects one fault for a while, then heals: the leader or a
// follower cut off, slow links everywhere, or a leadership transfer.
func chaos(tc *tcluster, round int, hold time.Duration) {
	nodes := tc.running()
	var leader *tnode
	for _, n := range nodes {
		if n.c.IsLeader() {
			leader = n
		}
	}
	switch round % 4 {
	case 0:
		if leader != nil {
			tc.net.Isolate(leader.id)
		}
	case 1:
		tc.net.Isolate(nodes[rand.IntN(len(nodes))].id)
	case 2:
		for _, a := range nodes {
			for _, b := range nodes {
				tc.net.SetLatency(a.id, b.id, 20*time.Millisecond)
			}
		}
	case 3:
		if leader != nil {
			leader.c.raft.LeadershipTransfer()
		}
	}
	time.Sleep(hold) // the fault lasts this long
	tc.net.Heal()
	for _, a := range nodes {
		for _, b := range nodes {
			tc.net.SetLatency(a.id, b.id, 0)
		}
	}
}

func TestLinearizableUnderFaults(t *testing.T) {
	nodes, writers, iters, rounds := 5, 5, 40, 8
	if testing.Short() {
		nodes, writers, iters, rounds = 3, 3, 25, 4
	}
	tc := newCluster(t, testOpts{n: nodes, maxVoters: 5})
	keys := []string{"a", "b", "c"}
	h := &history{start: time.Now(), acked: map[string]uint64{}}

	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range rounds {
			chaos(tc, r, 400*time.Millisecond)
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				n := tc.nodes[rand.IntN(len(tc.nodes))]
				key := keys[rand.IntN(len(keys))]
				if rand.IntN(2) == 0 {
					// Every third write has no idempotency key: it is not
					// retried once handed over, so it can end unknown.
					idem := fmt.Sprintf("w%d-%d", w, i)
					if i%3 == 0 {
						idem = ""
					}
					h.write(tc, w, n, key, w*1000+i+1, idem)
				} else {
					h.read(w, n, key)
				}
			}
		}()
	}
	wg.Wait()
	<-done
	tc.net.Heal()

	// Final reads on every node close the history.
	tc.leader()
	for i, n := range tc.nodes {
		for _, k := range keys {
			h.read(writers+i, n, k)
		}
	}
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linreg.Model, h.ops, time.Minute)
	took := time.Since(checkStart)
	t.Logf("operations %s; porcupine checked %d of them in %v: %s", h.tally, len(h.ops), took.Round(time.Millisecond), res)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		// Kept after the test (t.TempDir would be removed with it).
		if dir, err := os.MkdirTemp("", "sovra-linearizability-"); err == nil {
			if err := porcupine.VisualizePath(linreg.Model, info, filepath.Join(dir, "history.html")); err == nil {
				t.Logf("visualisation written to %s", filepath.Join(dir, "history.html"))
			}
		}
		t.Fatalf("history of %d operations is not linearizable", len(h.ops))
	default:
		t.Fatalf("porcupine gave no verdict (%s) on %d operations in %v: the history proves nothing", res, len(h.ops), took)
	}
	// A history in which most operations failed proves little: the faults
	// come and go, and between them the cluster must get work done.
	if tl := h.tally; tl.completed() < tl.attempted()/2 || tl.writesDone < tl.writes/3 {
		t.Fatalf("too little work completed for the check to mean anything: %s (want at least half completed and a third of the writes acknowledged)", tl)
	}

	// Every acknowledged write is in every state machine, at the index it
	// was acknowledged with; all state machines agree.
	tc.waitConverged()
	for _, n := range tc.nodes {
		n.c.Machine().Read(func(s *state.State) {
			for key, idx := range h.acked {
				if got, ok := s.Idem[key]; !ok || got.Index != idx {
					t.Errorf("%s: acknowledged write %s at %d missing (have %+v)", n.id, key, idx, got)
				}
			}
		})
	}
}
