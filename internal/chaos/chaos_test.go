package chaos

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testwait"
)

// Targets the suite holds the cluster to.
const (
	minSuccess   = 0.995           // of requests no kill was in flight for
	maxElection  = 3 * time.Second // from killing the leader to a new one
	leaderKills  = 5
	deployment   = "chat"
	inferClients = 4
	adminClients = 2
)

// faultLog records what the suite did and when.
type faultLog struct {
	mu        sync.Mutex
	windows   []window // kills (an instant) and backend faults (while on)
	injected  map[string]int
	elections []time.Duration
}

// window is when a fault was on.
type window struct{ from, to time.Time }

func (l *faultLog) add(kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.injected[kind]++
}

func (l *faultLog) kill(at time.Time) { l.during(at, at) }

func (l *faultLog) during(from, to time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, window{from, to})
}

func TestChaos(t *testing.T) {
	f := startFleet(t, 3)
	defer f.dumpLogs()
	ctx := context.Background()
	setup(t, f)

	log := &faultLog{injected: map[string]int{}}
	inf := newInference(f, deployment)
	adm := newAdmin(f)
	keys := adminKeys(t, f)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < inferClients; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); inf.run(wctx, uint64(i)) }(i)
	}
	for i, k := range keys {
		wg.Add(1)
		go func(i int, k string) { defer wg.Done(); adm.writer(wctx, i, k) }(i, k)
	}

	soak, _ := time.ParseDuration(os.Getenv("SOVRA_CHAOS_SOAK"))
	began := time.Now()
	for round := 1; round == 1 || time.Since(began) < soak; round++ {
		faultCycle(t, f, log)
	}
	stop()
	wg.Wait()

	checkBackendsIdle(t, f)
	checkStateConverges(t, f)
	checkAdmin(t, f, adm, keys)
	report(t, f, log, inf, adm, time.Since(began))
}

// setup deploys the model every client asks for on every node.
func setup(t *testing.T, f *fleet) {
	t.Helper()
	f.waitNodes(60 * time.Second)
	three := 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := f.client(f.ids[0]).CreateDeployment(client.WithIdempotencyKey(ctx, "chaos-setup"),
		client.DeploymentRequest{Name: deployment, Model: "llama3.2:1b", Replicas: &three})
	if err != nil {
		t.Fatal(err)
	}
	f.waitHealthy(60*time.Second, deployment, 3)
}

// adminKeys makes the API keys the admin writers own.
func adminKeys(t *testing.T, f *fleet) []string {
	t.Helper()
	var ids []string
	for i := 0; i < adminClients; i++ {
		name := "0"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		k, err := f.client(f.ids[i%len(f.ids)]).CreateKey(client.WithIdempotencyKey(ctx, fmt.Sprintf("chaos-key-%d", i)), client.KeyRequest{Name: &name})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	return ids
}

// faultCycle injects each kind of fault once, waiting for the cluster to
// heal after each.
func faultCycle(t *testing.T, f *fleet, log *faultLog) {
	for i := 0; i < leaderKills; i++ {
		killLeader(t, f, log)
	}
	killFollower(t, f, log)
	backendFaults(t, f, log)
	restartAll(t, f, log)
}

func killLeader(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	leader := f.leader(f.alive())
	if leader == "" {
		t.Fatal("no leader before a leader kill")
	}
	at := f.kill(leader)
	log.kill(at)
	log.add("kill -9 the leader")
	survivors := f.alive()
	var took time.Duration
	testwait.Until(t, 30*time.Second, func() bool {
		if l := f.leader(survivors); l != "" {
			took = time.Since(at)
			return true
		}
		return false
	}, func() string { return "a new leader after killing " + leader })
	log.mu.Lock()
	log.elections = append(log.elections, took)
	log.mu.Unlock()
	f.restart(leader)
	f.waitHealthy(60*time.Second, deployment, 3)
}

func killFollower(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	leader := f.leader(f.alive())
	for _, id := range f.ids {
		if id != leader {
			log.kill(f.kill(id))
			log.add("kill -9 a follower")
			// Past the down-after: the leader marks it down and the
			// routers stop sending it requests.
			waitStatus(t, f, leader, id, client.NodeDown)
			f.restart(id)
			f.waitHealthy(60*time.Second, deployment, 3)
			return
		}
	}
}

// waitStatus waits until node from sees node id with status.
func waitStatus(t *testing.T, f *fleet, from, id, status string) {
	t.Helper()
	testwait.For(t, 30*time.Second, id+" "+status+" as "+from+" sees it", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := f.client(from).ClusterStatus(ctx)
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.ID == id {
				return m.Status == status
			}
		}
		return false
	})
}

// backendFaults makes one node's Ollama misbehave in turn, each for a
// while under traffic, then heals it.
func backendFaults(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	sim := f.procs[f.ids[1]].sim
	hold := 2 * time.Second
	for _, fault := range []struct {
		kind string
		set  func()
	}{
		{"Ollama answers 500", func() { sim.SetFail(true) }},
		{"Ollama cuts streams", func() { sim.SetDropAfter(3) }},
		{"Ollama stalls", func() { sim.SetStallAfter(2) }},
		{"Ollama goes away", func() { _ = sim.SetRefuse(true) }},
	} {
		from := time.Now()
		fault.set()
		log.add(fault.kind)
		time.Sleep(hold) // the fault lasts this long under traffic: a duration, not a wait for a condition
		if err := sim.ClearFaults(); err != nil {
			t.Fatal(err)
		}
		log.during(from, time.Now())
		f.waitHealthy(60*time.Second, deployment, 3)
	}
}

func restartAll(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	for _, id := range f.ids {
		log.kill(f.kill(id))
	}
	log.add("kill -9 every node")
	for _, id := range f.ids {
		f.restart(id)
	}
	f.waitHealthy(90*time.Second, deployment, 3)
}

// checkBackendsIdle: once the clients stopped, no Ollama still serves a
// request (a client that left must not leave its generation running).
func checkBackendsIdle(t *testing.T, f *fleet) {
	t.Helper()
	for _, id := range f.ids {
		sim := f.procs[id].sim
		testwait.For(t, 30*time.Second, id+"'s Ollama idle", func() bool { return sim.Stats().InFlight == 0 })
	}
}

// checkStateConverges: every node ends with the same state.
func checkStateConverges(t *testing.T, f *fleet) {
	t.Helper()
	var states map[string]string
	testwait.Until(t, 30*time.Second, func() bool {
		states = map[string]string{}
		for _, id := range f.ids {
			s, _, err := f.stateOf(id)
			if err != nil {
				return false
			}
			states[id] = s
		}
		for _, id := range f.ids {
			if states[id] != states[f.ids[0]] {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("every node to hold the same state; last %v", states) })
}

// checkAdmin: the history is linearizable and every acknowledged write
// is there.
func checkAdmin(t *testing.T, f *fleet, adm *admin, keys []string) {
	t.Helper()
	adm.mu.Lock()
	ops := append([]porcupine.Operation(nil), adm.ops...)
	acked := adm.acked
	adm.mu.Unlock()
	res, _ := porcupine.CheckOperationsVerbose(registerModel, ops, time.Minute)
	if res != porcupine.Ok {
		t.Errorf("the admin history of %d operations is not linearizable (%v)", len(ops), res)
	}
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := f.client(f.ids[0]).Key(ctx, k)
		cancel()
		if err != nil {
			t.Fatalf("read key %s: %v", k, err)
		}
		if v := atoi(got.Name); v < acked[k] {
			t.Errorf("key %s holds %d, but %d was acknowledged", k, v, acked[k])
		}
	}
}

func atoi(s string) int {
	var v int
	fmt.Sscan(s, &v)
	return v
}

// report prints the figures and fails the test where a target is missed.
func report(t *testing.T, f *fleet, log *faultLog, inf *inference, adm *admin, took time.Duration) {
	t.Helper()
	inf.mu.Lock()
	reqs := append([]request(nil), inf.done...)
	inf.mu.Unlock()
	byOutcome := map[string]int{}
	var counted, ok, lost int
	var examples []string
	for _, r := range reqs {
		byOutcome[r.outcome]++
		if r.outcome == outLost {
			lost++
			examples = append(examples, fmt.Sprintf("%s stream=%v native=%v status=%d %q", r.entry, r.stream, r.native, r.status, r.detail))
		}
		if r.outcome == outHungUp || log.inFlight(r) {
			continue
		}
		counted++
		if r.outcome == outOK {
			ok++
		} else if len(examples) < 20 {
			examples = append(examples, fmt.Sprintf("%s: %s stream=%v native=%v status=%d %.200q", r.outcome, r.entry, r.stream, r.native, r.status, r.detail))
		}
	}
	rate := float64(ok) / float64(max(counted, 1))
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run of %v on %d nodes\n", took.Round(time.Second), len(f.ids))
	kinds := make([]string, 0, len(log.injected))
	for k := range log.injected {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  fault %-22s x%d\n", k, log.injected[k])
	}
	fmt.Fprintf(&b, "  inference requests %d: %v\n", len(reqs), byOutcome)
	fmt.Fprintf(&b, "  success rate of the requests no fault was on for: %d/%d = %.4f (target %.3f); the others succeeded or failed with a clear error\n", ok, counted, rate, minSuccess)
	fmt.Fprintf(&b, "  admin writes %d (acknowledged: all found; outcome unknown: %d), reads %d (failed %d), linearizable checked over %d operations\n",
		adm.writes, adm.unknown, adm.reads, adm.readFails, len(adm.ops))
	fmt.Fprintf(&b, "  leader elections after kill -9: %v (target < %v)\n", log.elections, maxElection)
	t.Log(b.String())
	if lost > 0 {
		t.Errorf("%d requests lost (a stream ended with neither its end nor an error): %q", lost, examples)
	}
	if rate < minSuccess {
		t.Errorf("success rate %.4f below %.3f; some failures: %q", rate, minSuccess, examples)
	}
	for _, e := range log.elections {
		if e > maxElection {
			t.Errorf("a new leader took %v after a leader kill", e)
		}
	}
	if len(reqs) < 100 || adm.writes < 50 {
		t.Errorf("too little traffic to judge: %d requests, %d writes", len(reqs), adm.writes)
	}
}

// inFlight reports whether a fault was on while the request ran: a
// kill, or a backend fault.
func (l *faultLog) inFlight(r request) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.windows {
		if !w.to.Before(r.start) && !w.from.After(r.end) {
			return true
		}
	}
	return false
}
