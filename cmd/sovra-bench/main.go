// Command sovra-bench measures sovra.
//
//	sovra-bench proxy [flags]
//
// measures the latency and CPU time that sovra's serving path adds in front
// of Ollama. It builds and starts, on loopback, the simulated Ollama
// (cmd/ollama-sim) tuned never to be the bottleneck, a sovra node over it,
// and a minimal fasthttp reverse proxy over it as the baseline; then it
// sends the same chat load straight to the simulator, through sovra and
// through the baseline, and prints latency percentiles, the latency sovra
// adds, CPU time per request and per stream event, stream completeness, and
// whether the figures meet sovra's targets.
//
//	sovra-bench route [flags]
//
// measures how well sovra routes: it starts several simulated Ollamas of
// unequal speed and slot counts, one sovra node beside each forming one
// cluster, and sends open-loop Poisson chat load through the nodes under
// each routing policy, comparing time to first token and queue waits with
// an oracle that dispatches straight to the simulators knowing every
// service time; a multi-turn workload measures prefix affinity.
//
//	sovra-bench baseline-proxy --listen ADDR --target HOST:PORT
//
// runs the baseline proxy alone; `proxy` starts it this way as a separate
// process so that its CPU time can be read like sovra's.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "proxy":
		err = runProxyBench(ctx, os.Args[2:])
	case "route":
		err = runRouteBench(ctx, os.Args[2:])
	case "baseline-proxy":
		err = runBaselineProxy(ctx, os.Args[2:])
	case "help", "-h", "--help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "sovra-bench: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sovra-bench:", err)
		if _, ok := err.(usageError); ok {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake on the command line.
type usageError struct{ error }

// report is the evaluated outcome of a benchmark command.
type report interface {
	WriteTable(out io.Writer)
	Passed() bool
}

// printReport prints rep to stdout, as indented JSON when asJSON is set,
// else as tables. When strict is set and a target failed, it calls
// tearDown and exits with status 3.
func printReport(rep report, asJSON, strict bool, tearDown func()) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.WriteTable(os.Stdout)
	}
	if strict && !rep.Passed() {
		tearDown()
		os.Exit(3)
	}
	return nil
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  sovra-bench proxy [flags]           measure the overhead of sovra's serving path
  sovra-bench route [flags]           compare sovra's routing policies with an oracle
  sovra-bench baseline-proxy [flags]  run the baseline fasthttp reverse proxy

Run "sovra-bench COMMAND -h" for the flags of a command.
`)
}
