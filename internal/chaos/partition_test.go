package chaos

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testwait"
)

// partitioner cuts nodes off from each other on loopback. Each node's
// process lives in a cgroup of its own, and iptables drops the packets a
// node's cgroup sends to another node's raft and HTTP ports, which cuts
// both directions of every connection between them (new ones hang in
// SYN, open ones stop carrying data) while the test's clients and the
// node's own Ollama still reach it: a node cut off from its peers, not
// from the world. It needs root, a cgroup2 mount and iptables' cgroup
// match; without them the partition fault is skipped (and fails with
// SOVRA_REQUIRE_PARTITION=1).
type partitioner struct {
	root   string // the cgroup2 mount
	prefix string // this run's cgroup names start with it
	mu     sync.Mutex
	rules  [][]string // iptables rule specs in force
	groups map[string]bool
}

// newPartitioner returns nil, and the reason, when this machine cannot
// partition.
func newPartitioner() (*partitioner, string) {
	if os.Geteuid() != 0 {
		return nil, "not root"
	}
	root := cgroup2Mount()
	if root == "" {
		return nil, "no cgroup2 mount"
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, "no iptables"
	}
	p := &partitioner{root: root, prefix: fmt.Sprintf("sovra-chaos-%d-", os.Getpid()), groups: map[string]bool{}}
	// Probe: a rule that matches this run's (empty) probe cgroup.
	if err := p.group("probe"); err != nil {
		return nil, err.Error()
	}
	probe := []string{"OUTPUT", "-m", "cgroup", "--path", p.prefix + "probe", "-p", "tcp", "--dport", "9", "-j", "DROP"}
	if err := iptables("-A", probe); err != nil {
		p.close()
		return nil, err.Error()
	}
	_ = iptables("-D", probe)
	return p, ""
}

// cgroup2Mount is where the cgroup2 hierarchy is mounted ("" if nowhere).
func cgroup2Mount() string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1]
		}
	}
	return ""
}

func iptables(op string, rule []string) error {
	out, err := exec.Command("iptables", append([]string{"-w", op}, rule...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s %v: %v: %s", op, rule, err, out)
	}
	return nil
}

// group makes the cgroup of node id.
func (p *partitioner) group(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := filepath.Join(p.root, p.prefix+id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	p.groups[id] = true
	return nil
}

// place moves a node's process into its cgroup.
func (p *partitioner) place(id string, pid int) error {
	if err := p.group(id); err != nil {
		return err
	}
	procs := filepath.Join(p.root, p.prefix+id, "cgroup.procs")
	return os.WriteFile(procs, []byte(fmt.Sprint(pid)), 0o644)
}

// isolate cuts node id off from the others: ports lists each node's raft
// and HTTP addresses.
func (p *partitioner) isolate(id string, ports map[string][]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for other, addrs := range ports {
		if other == id {
			continue
		}
		for _, r := range [][]string{dropTo(p.prefix+id, addrs), dropTo(p.prefix+other, ports[id])} {
			if err := iptables("-A", r); err != nil {
				return err
			}
			p.rules = append(p.rules, r)
		}
	}
	return nil
}

// dropTo is the rule that drops what cgroup sends to the addresses' ports
// on loopback.
func dropTo(cgroup string, addrs []string) []string {
	var ports []string
	for _, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		ports = append(ports, port)
	}
	return []string{"OUTPUT", "-m", "cgroup", "--path", cgroup, "-p", "tcp", "-d", "127.0.0.1",
		"-m", "multiport", "--dports", strings.Join(ports, ","), "-j", "DROP"}
}

// heal removes every rule in force.
func (p *partitioner) heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first error
	for _, r := range p.rules {
		if err := iptables("-D", r); err != nil && first == nil {
			first = err
		}
	}
	p.rules = nil
	return first
}

// close heals and removes the cgroups (their processes must have ended).
func (p *partitioner) close() {
	_ = p.heal()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.groups {
		_ = os.Remove(filepath.Join(p.root, p.prefix+id))
	}
}

// partitionHold is how long the leader stays cut off: longer than the
// clients' timeout.
const partitionHold = clientTimeout + 5*time.Second

// partitionLeader cuts the leader off from the other nodes for longer
// than the down-after while clients go on using every node (the cut-off
// one too), then heals: the others elect a leader, the old one must not
// acknowledge a write it cannot commit, and all converge after.
func partitionLeader(t *testing.T, f *fleet, log *faultLog) {
	t.Helper()
	if f.parts == nil {
		if os.Getenv("SOVRA_REQUIRE_PARTITION") == "1" {
			t.Fatalf("cannot partition nodes here: %s", f.noParts)
		}
		t.Logf("partition fault skipped: %s", f.noParts)
		return
	}
	leader := f.leader(f.alive())
	if leader == "" {
		t.Fatal("no leader before a partition")
	}
	ports := map[string][]string{}
	for _, id := range f.ids {
		ports[id] = []string{f.proc(id).http, f.proc(id).raft}
	}
	from := time.Now()
	if err := f.parts.isolate(leader, ports); err != nil {
		t.Fatal(err)
	}
	log.add("partition the leader away")
	var others []string
	for _, id := range f.alive() {
		if id != leader {
			others = append(others, id)
		}
	}
	testwait.Until(t, 30*time.Second, func() bool {
		l := f.leader(others)
		return l != "" && l != leader
	}, func() string { return "a new leader on the majority side after cutting " + leader + " off" })
	log.mu.Lock()
	log.partitionElections = append(log.partitionElections, time.Since(from))
	log.mu.Unlock()
	waitStatus(t, f, f.leader(others), leader, client.NodeDown)
	// Hold the cut for longer than a client waits for an answer, so a
	// request stuck on a connection into the cut-off node shows as lost.
	time.Sleep(time.Until(from.Add(partitionHold))) // the fault lasts this long: a duration, not a wait for a condition
	if err := f.parts.heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	f.waitHealthy(60*time.Second, deployment, replicas)
	// Requests entering the other nodes count from the moment of the
	// cut: they must find the replicas on their side.
	log.cutOff(leader, from, healed)
	log.during(healed, time.Now())
}
