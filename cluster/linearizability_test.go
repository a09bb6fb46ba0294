package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sovra/sovra/cluster/state"
)

// regInput and regOutput describe one operation on a per-deployment
// register (the deployment's replica count; 0 while absent).
type regInput struct {
	key   string
	write bool
	value int
}

type regOutput struct {
	value   int
	unknown bool // a write whose outcome is unknown
}

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return 0 },
	Step: func(st, in, out any) (bool, any) {
		i, o := in.(regInput), out.(regOutput)
		if i.write {
			return true, i.value
		}
		return o.value == st.(int), st
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(regInput), out.(regOutput)
		if i.write {
			return fmt.Sprintf("put(%s, %d) unknown=%v", i.key, i.value, o.unknown)
		}
		return fmt.Sprintf("get(%s) -> %d", i.key, o.value)
	},
}

// history records operations for porcupine and the writes that were
// acknowledged.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	acked map[string]uint64 // idempotency key -> applied index (keyed writes)
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
	op := porcupine.Operation{ClientId: client, Input: regInput{key: key, write: true, value: value}, Call: call, Return: ret, Output: regOutput{}}
	switch {
	case err == nil && idem != "":
		h.mu.Lock()
		h.acked[idem] = out.Index
		h.mu.Unlock()
	case err == nil:
	case errors.Is(err, ErrIndeterminate):
		op.Output, op.Return = regOutput{unknown: true}, math.MaxInt64
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return
	default:
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
		return // a failed read observed nothing
	}
	h.add(porcupine.Operation{ClientId: client, Input: regInput{key: key}, Call: call, Output: regOutput{value: got}, Return: h.now()})
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
	res, info := porcupine.CheckOperationsVerbose(registerModel, h.ops, time.Minute)
	if res == porcupine.Illegal {
		if err := porcupine.VisualizePath(registerModel, info, t.TempDir()+"/history.html"); err == nil {
			t.Logf("visualisation written under %s", t.TempDir())
		}
		t.Fatalf("history of %d operations is not linearizable", len(h.ops))
	}
	unknown := 0
	for _, op := range h.ops {
		if op.Output.(regOutput).unknown {
			unknown++
		}
	}
	t.Logf("%d operations (%d acknowledged writes, %d unknown): %s", len(h.ops), len(h.acked), unknown, res)

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
