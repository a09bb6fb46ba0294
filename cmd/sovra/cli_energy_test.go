package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// fakeGPU is one node's nvidia-smi: one H100 whose energy counter grows
// by 12,000 J (600 W for 20 s) between two readings, whatever the real
// time, and whose readings the test paces with ticks.
type fakeGPU struct {
	ticks chan time.Time
	calls chan int

	mu sync.Mutex
	n  int
}

const joulesPerReading = 12_000

func (f *fakeGPU) run(context.Context, string, ...string) ([]byte, error) {
	f.mu.Lock()
	n := f.n
	f.n++
	f.mu.Unlock()
	defer func() { f.calls <- n }()
	mj := 392_781_553_904 + int64(n)*joulesPerReading*1000
	return fmt.Appendf(nil, "0, GPU-391fc3fc-d281-364a-d690-ccbb0208032c, 600.00, %d, 91, 700.00\n", mj), nil
}

// TestCLIUsageEnergy measures a node's GPU with a fake nvidia-smi while a
// key's chats run on it, and checks that the energy reaches the node's
// metrics, the usage API and `sovra usage`: all of the interval's
// 12,000 J go to the model that produced every token in it, and a node
// whose GPU produced nothing reports its energy as idle.
func TestCLIUsageEnergy(t *testing.T) {
	gpus := map[string]*fakeGPU{}
	for _, id := range []string{"a", "b"} {
		gpus[id] = &fakeGPU{ticks: make(chan time.Time), calls: make(chan int, 16)}
	}
	c := testcluster.Start(t, []testcluster.Spec{{ID: "a", GPUs: "1xH100:80GiB"}, {ID: "b", GPUs: "1xH100:80GiB"}},
		func(cfg *node.Config) {
			cfg.Usage.Flush = 100 * time.Millisecond
			cfg.Energy.Runner, cfg.Energy.Ticks = gpus[cfg.NodeID].run, gpus[cfg.NodeID].ticks
		})
	for _, g := range gpus {
		<-g.calls // the first reading, the base of the next
	}
	env := clusterEnv(t, c, "b")
	var k client.Key
	sovra(t, env, "key", "create", "--name", "metered", "-o", "json").ok(t).decode(t, &k)
	waitKeyAnswers(t, c, k.Secret, http.StatusOK)
	var completion int64
	for i := range 3 {
		_, cmpl := chatWith(t, c.URL("a"), k.Secret, fmt.Sprintf("hello number %d", i))
		completion += cmpl
	}
	for _, g := range gpus {
		g.ticks <- time.Now()
		<-g.calls
	}
	want := joulesPerReading / float64(completion) * 1000

	testwait.For(t, 10*time.Second, "the energy in the usage", func() bool {
		r, err := c.Client("a").Usage(context.Background(), client.UsageQuery{GroupBy: []string{"key", "model", "node"}})
		return err == nil && len(r.Rows) == 1 && r.Rows[0].EnergyJoules > 0
	})
	var got client.UsageReport
	sovra(t, env, "usage", "-o", "json").ok(t).decode(t, &got)
	r := got.Rows[0]
	if r.Key != k.ID || r.Model != "llama3.2:1b" || r.Node != "a" || r.EnergyJoules != joulesPerReading ||
		math.Abs(r.JoulesPer1kTokens-want) > 1e-6 || r.EnergyEstimated {
		t.Fatalf("row %+v, want %d J, %.1f J per 1k tokens, measured", r, joulesPerReading, want)
	}
	table := sovra(t, env, "usage", "--by", "model").ok(t).lines()
	if f := strings.Fields(table[1]); f[0] != "llama3.2:1b" || f[len(f)-1] != fmt.Sprintf("%.1f", want) {
		t.Fatalf("table:\n%s", strings.Join(table, "\n"))
	}

	metrics := scrape(t, c.URL("a"))
	for _, line := range []string{
		fmt.Sprintf(`sovra_energy_joules_total{model="llama3.2:1b",node="a",source="counter"} %d`, joulesPerReading),
		fmt.Sprintf(`sovra_output_tokens_total{model="llama3.2:1b",node="a"} %d`, completion),
		fmt.Sprintf(`sovra_gpu_energy_joules_total{gpu="0",node="a",source="counter"} %d`, joulesPerReading),
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("node a's metrics lack %s", line)
		}
	}
	if line := fmt.Sprintf(`sovra_energy_idle_joules_total{gpu="0",node="b",source="counter"} %d`, joulesPerReading); !strings.Contains(scrape(t, c.URL("b")), line+"\n") {
		t.Errorf("node b's metrics lack %s", line)
	}
}

// scrape reads a node's /metrics.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}
