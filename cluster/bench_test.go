package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

// tunedTimings are the faster raft timings the failover benchmark compares
// with raft's defaults (1s heartbeat and election timeouts, 500ms lease).
var tunedTimings = RaftTimings{
	HeartbeatTimeout:   500 * time.Millisecond,
	ElectionTimeout:    500 * time.Millisecond,
	LeaderLeaseTimeout: 250 * time.Millisecond,
	CommitTimeout:      10 * time.Millisecond,
}

// BenchmarkFailover kills the leader of a 3-node loopback cluster at least
// ten times (b.N when larger) and measures until a surviving node leads.
// The killed node is restarted and caught up before the next kill. Run
// with -benchtime=1x: one iteration already holds the ten kills.
func BenchmarkFailover(b *testing.B) {
	for _, tt := range []struct {
		name    string
		timings RaftTimings
	}{
		{"default", RaftTimings{}},
		{"tuned-500ms", tunedTimings},
	} {
		b.Run(tt.name, func(b *testing.B) {
			tc := newCluster(b, testOpts{n: 3, timings: &tt.timings, heartbeat: 200 * time.Millisecond, downAfter: 5 * time.Second})
			var took []time.Duration
			for range max(b.N, 10) {
				took = append(took, killLeader(b, tc))
			}
			slices.Sort(took)
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[len(took)-1]), "max-ms")
			b.ReportMetric(float64(len(took)), "kills")
		})
	}
}

// killLeader stops the leader, times the election of a new one, then
// restarts the old leader and waits for it to follow.
func killLeader(b *testing.B, tc *tcluster) time.Duration {
	old := tc.leader()
	start := time.Now()
	tc.stop(old)
	testwait.For(b, 30*time.Second, "a new leader", func() bool {
		for _, n := range tc.running() {
			if n.c.IsLeader() {
				return true
			}
		}
		return false
	})
	took := time.Since(start)
	tc.start(old)
	l := tc.leader()
	tc.put(l, "after-"+old.id, 1)
	testwait.For(b, 30*time.Second, "old leader caught up", func() bool {
		return old.c.Machine().Index() >= l.c.Machine().Index()
	})
	return took
}

// BenchmarkCommit measures commits through raft with the log on disk and
// raft's default timings: 16 writers apply PutDeployment commands, on the
// leader or through a follower (forwarded over HTTP).
func BenchmarkCommit(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		b.Run(via, func(b *testing.B) {
			tc := newCluster(b, testOpts{n: 3, timings: &RaftTimings{}, heartbeat: time.Second, downAfter: 10 * time.Second})
			n := tc.leader()
			if via == "follower" {
				n = tc.followers()[0]
			}
			benchWriters(b, n, 16)
		})
	}
}

func benchWriters(b *testing.B, n *tnode, writers int) {
	lat := make([][]time.Duration, writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				t0 := time.Now()
				if _, err := n.c.Apply(ctx, putCmd(fmt.Sprintf("d%d", w), int(i), "")); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
