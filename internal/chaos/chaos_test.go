package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/linreg"
	"github.com/sovra/sovra/internal/testwait"
)

// Targets the suite holds the cluster to; the times are enforced only
// with SOVRA_CHAOS_STRICT=1 (on a machine not shared with other work).
const (
	minSuccess  = 0.995           // of requests no kill was in flight for
	maxElection = 3 * time.Second // from killing the leader to a new one
	leaderKills = 5
	nodes       = 4
	replicas    = 3 // one node holds none: replicas of a dead node can move there
	deployment  = "chat"
	// maxReplace bounds how long a dead node's replica takes to be ready
	// elsewhere: the fleet's down-after and down-grace, plus the
	// scheduler's pass and a (simulated, instant) load.
	maxReplace   = 2*time.Second + 3*time.Second + 5*time.Second
	inferClients = 4
	adminClients = 2
)

// faultLog records what the suite did and when.
type faultLog struct {
	mu        sync.Mutex
	windows   []window // kills (an instant) and backend faults (while on)
	injected  map[string]int
	elections []time.Duration
	replaced  []time.Duration
	// replacedPhases: when the dead node was seen down, and when its
	// replica was placed elsewhere.
	replacedPhases []string
	// partitionElections: from cutting the leader off to a new leader on
	// the majority side (election timeouts must run out first).
	partitionElections []time.Duration
}

// window is when a fault was on; a window with a node was on for the
// requests entering that node only.
type window struct {
	from, to time.Time
	node     string
}

func (l *faultLog) add(kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.injected[kind]++
}

func (l *faultLog) kill(at time.Time) { l.during(at, at) }

func (l *faultLog) during(from, to time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, window{from: from, to: to})
}

// cutOff records a node cut off from its peers: the requests in flight
// at the cut, and those entering the node while it was cut off.
func (l *faultLog) cutOff(node string, from, to time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, window{from: from, to: from}, window{from: from, to: to, node: node})
}

func TestChaos(t *testing.T) {
	f := startFleet(t, nodes)
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

	// The goroutine check at the end looks for request frames: they must
	// show while requests run, or it would pass by matching nothing.
	testwait.Until(t, 20*time.Second, func() bool {
		return requestGoroutines(t, f.proc(f.ids[0]).debug) != ""
	}, func() string { return "a request running on " + f.ids[0] + " in its goroutine dump" })

	soak, _ := time.ParseDuration(os.Getenv("SOVRA_CHAOS_SOAK"))
	began := time.Now()
	for round := 1; round == 1 || time.Since(began) < soak; round++ {
		faultCycle(t, f, log)
	}
	stop()
	wg.Wait()

	checkBackendsIdle(t, f)
	checkNoRequestsLeft(t, f)
	checkStateConverges(t, f)
	checkAdmin(t, f, adm, keys)
	report(t, f, log, inf, adm, time.Since(began))
}

// setup deploys the model every client asks for on every node.
func setup(t *testing.T, f *fleet) {
	t.Helper()
	f.waitNodes(60 * time.Second)
	n := replicas
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := f.client(f.ids[0]).CreateDeployment(client.WithIdempotencyKey(ctx, "chaos-setup"),
		client.DeploymentRequest{Name: deployment, Model: "llama3.2:1b", Replicas: &n})
	if err != nil {
		t.Fatal(err)
	}
	f.waitHealthy(60*time.Second, deployment, replicas)
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
	freezeNode(t, f, log)
	partitionLeader(t, f, log)
	joinAndLeave(t, f, log)
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
	f.waitHealthy(60*time.Second, deployment, replicas)
}

// killFollower kills a follower that holds a replica and measures how
// long its replica takes to be ready on another node.
func killFollower(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	leader := f.leader(f.alive())
	victim := holderBut(t, f, leader)
	at := f.kill(victim)
	log.kill(at)
	log.add("kill -9 a follower")
	cl := f.client(leader)
	// The phases: marked down, a replacement placed, the replacement ready.
	var down, placed time.Duration
	testwait.For(t, 60*time.Second, "the replica of "+victim+" ready elsewhere", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if down == 0 {
			if n, err := cl.Node(ctx, victim); err == nil && n.Status == client.NodeDown {
				down = time.Since(at)
			}
		}
		d, err := cl.Deployment(ctx, deployment)
		if err != nil {
			return false
		}
		on := false
		for _, p := range d.Placements {
			on = on || p.Node == victim
		}
		if !on && placed == 0 && len(d.Placements) == replicas {
			placed = time.Since(at)
		}
		return !on && d.ReadyReplicas == replicas
	})
	log.mu.Lock()
	log.replaced = append(log.replaced, time.Since(at))
	log.replacedPhases = append(log.replacedPhases, fmt.Sprintf("down %v, placed %v", down.Round(time.Millisecond), placed.Round(time.Millisecond)))
	log.mu.Unlock()
	f.restart(victim)
	f.waitHealthy(60*time.Second, deployment, replicas)
}

// holderBut is a node that holds a replica, other than the leader.
func holderBut(t *testing.T, f *fleet, leader string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := f.client(leader).Deployment(ctx, deployment)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Placements {
		if p.Node != leader {
			return p.Node
		}
	}
	t.Fatalf("no replica off the leader: %+v", d.Placements)
	return ""
}

// joinAndLeave adds a node under traffic, then drains it, stops it and
// removes it, as an operator retiring a host would.
func joinAndLeave(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	extra := fmt.Sprintf("x%d", f.count()+1)
	f.addNode(extra)
	log.add("a node joins, then is drained and removed")
	leader := f.leader(f.alive())
	waitStatus(t, f, leader, extra, client.NodeReady)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := f.client(leader)
	if _, err := cl.Drain(client.WithIdempotencyKey(ctx, "drain-"+extra), extra, "chaos"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, extra+" drained", func() bool {
		n, err := cl.Node(ctx, extra)
		return err == nil && n.Drain != nil && n.Drain.Complete
	})
	f.kill(extra)
	testwait.For(t, 30*time.Second, extra+" removed", func() bool {
		return cl.Remove(ctx, extra) == nil || isNotMember(f, leader, extra)
	})
	f.waitHealthy(60*time.Second, deployment, replicas)
}

// isNotMember reports whether node from no longer lists id.
func isNotMember(f *fleet, from, id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := f.client(from).ClusterStatus(ctx)
	if err != nil {
		return false
	}
	for _, m := range st.Members {
		if m.ID == id {
			return false
		}
	}
	return true
}

// freezeNode stops a follower's process (SIGSTOP) past the down-after,
// as a node cut off from everyone would be, then lets it go on.
func freezeNode(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	leader := f.leader(f.alive())
	victim := holderBut(t, f, leader)
	p := f.proc(victim)
	p.mu.Lock()
	proc := p.cmd.Process
	p.mu.Unlock()
	from := time.Now()
	f.smu.Lock()
	f.serving[victim] = false
	f.smu.Unlock()
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.killedAt = append(p.killedAt, from) // its connections may break as a killed node's do
	p.mu.Unlock()
	log.add("freeze a node (SIGSTOP)")
	waitStatus(t, f, leader, victim, client.NodeDown)
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	log.during(from, time.Now())
	f.waitHealthy(60*time.Second, deployment, replicas)
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
	sim := f.proc(f.ids[1]).sim
	hold := 2 * time.Second
	for _, fault := range []struct {
		kind string
		set  func()
	}{
		{"Ollama answers 500", func() { sim.SetFail(true) }},
		{"Ollama cuts streams", func() { sim.SetDropAfter(3) }},
		{"Ollama stalls", func() { sim.SetStallAfter(2) }},
		{"Ollama goes away", func() { _ = sim.SetRefuse(true) }},
		{"Ollama sends malformed NDJSON", func() { sim.SetGarbleAfter(3) }},
		{"Ollama answers garbage to ps, tags, show", func() { sim.SetBadMeta(true) }},
	} {
		from := time.Now()
		fault.set()
		log.add(fault.kind)
		time.Sleep(hold) // the fault lasts this long under traffic: a duration, not a wait for a condition
		if err := sim.ClearFaults(); err != nil {
			t.Fatal(err)
		}
		// The fault's window lasts until the cluster is healthy again:
		// requests may fail clearly while it recovers.
		f.waitHealthy(60*time.Second, deployment, replicas)
		log.during(from, time.Now())
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
	f.waitHealthy(90*time.Second, deployment, replicas)
}

// checkBackendsIdle: once the clients stopped, no Ollama still serves a
// request (a client that left must not leave its generation running).
func checkBackendsIdle(t *testing.T, f *fleet) {
	t.Helper()
	for _, id := range f.ids {
		sim := f.proc(id).sim
		testwait.For(t, 30*time.Second, id+"'s Ollama idle", func() bool { return sim.Stats().InFlight == 0 })
	}
}

// requestFrames are functions on the stack of every inference request a
// node serves or forwards.
var requestFrames = []string{"sovra/node/router.(*Router).route(", "sovra/node/backend/ollama.(*Client).streamNDJSON("}

// checkNoRequestsLeft: once the clients stopped, no node still runs a
// request (a goroutine of a request whose client left, or stuck on a
// peer), as its profiler's goroutine dump shows.
func checkNoRequestsLeft(t *testing.T, f *fleet) {
	t.Helper()
	for _, id := range f.ids {
		var left string
		testwait.Until(t, 30*time.Second, func() bool {
			left = requestGoroutines(t, f.proc(id).debug)
			return left == ""
		}, func() string { return id + " to run no request; still running:\n" + left })
	}
}

// requestGoroutines are the goroutine stacks at debug that run a request.
func requestGoroutines(t *testing.T, debug string) string {
	t.Helper()
	resp, err := http.Get("http://" + debug + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, g := range strings.Split(string(b), "\n\n") {
		for _, fr := range requestFrames {
			if strings.Contains(g, fr) {
				left = append(left, g)
				break
			}
		}
	}
	return strings.Join(left, "\n\n")
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
	res, _ := porcupine.CheckOperationsVerbose(linreg.Model, ops, time.Minute)
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
		if r.outcome == outLost || r.outcome == outTimedOut || ((r.outcome == outCut || r.outcome == outRefused) && !f.killedDuring(r)) {
			// A connection may break only when its own node was killed;
			// no answer within the client's timeout is no clear error either.
			lost++
			examples = append(examples, fmt.Sprintf("%s: %s stream=%v native=%v status=%d %q", r.outcome, r.entry, r.stream, r.native, r.status, r.detail))
		}
		if r.outcome == outHungUp || log.inFlight(r) {
			continue
		}
		counted++
		if r.outcome == outOK {
			ok++
		} else if len(examples) < 20 {
			examples = append(examples, fmt.Sprintf("%s %s: %s stream=%v native=%v status=%d %.200q", r.start.Format("15:04:05.000"), r.outcome, r.entry, r.stream, r.native, r.status, r.detail))
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
	fmt.Fprintf(&b, "  new leader after cutting the leader off: %v\n", log.partitionElections)
	fmt.Fprintf(&b, "  a dead node's replica ready elsewhere after: %v (target < %v; %q)\n", log.replaced, maxReplace, log.replacedPhases)
	if len(examples) > 0 {
		fmt.Fprintf(&b, "  some requests that did not succeed: %q\n", examples)
		log.mu.Lock()
		for _, w := range log.windows {
			fmt.Fprintf(&b, "  fault window %s - %s %s\n", w.from.Format("15:04:05.000"), w.to.Format("15:04:05.000"), w.node)
		}
		log.mu.Unlock()
	}
	t.Log(b.String())
	if lost > 0 {
		t.Errorf("%d requests lost (ended with neither their end nor an error, or a connection broke while its node lived): %q", lost, examples)
	}
	if rate < minSuccess {
		t.Errorf("success rate %.4f below %.3f; some failures: %q", rate, minSuccess, examples)
	}
	// Times are targets to report, as benchmarks' are; SOVRA_CHAOS_STRICT=1
	// (on a machine not shared with other work) fails the run on them.
	if os.Getenv("SOVRA_CHAOS_STRICT") == "1" {
		for _, e := range log.elections {
			if e > maxElection {
				t.Errorf("a new leader took %v after a leader kill", e)
			}
		}
		for _, r := range log.replaced {
			if r > maxReplace {
				t.Errorf("a dead node's replica took %v to be ready elsewhere", r)
			}
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
		if !w.to.Before(r.start) && !w.from.After(r.end) && (w.node == "" || w.node == r.entry) {
			return true
		}
	}
	return false
}
