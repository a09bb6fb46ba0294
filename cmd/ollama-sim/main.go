// Command ollama-sim serves a simulated Ollama (package internal/ollamasim)
// for manual testing, demos and benchmarks of sovra without a GPU.
//
//	ollama-sim --addr 127.0.0.1:11434 --tokens-per-second 30 --parallel 2
//	ollama-sim --models llama3.2:1b,qwen3:8b --loaded llama3.2:1b
//	ollama-sim --models @models.json --control-addr 127.0.0.1:11500
//
// --models and --registry take comma-separated names (well-known names get
// realistic sizes, others generic ones) or @file with a JSON list of model
// objects. Faults can be set at start with flags and changed later with
// POST /_sim/faults; --control-addr serves /_sim/ on a separate listener that
// stays reachable while --refuse is on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sovra/sovra/internal/ollamasim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ollama-sim:", err)
		os.Exit(1)
	}
}

// options are the parsed command line.
type options struct {
	addr, controlAddr string
	models, registry  string
	loaded            string
	prefixCache       int
	shutdownTimeout   time.Duration
	dropAfter         int
	stallAfter        int
	cfg               ollamasim.Config
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("ollama-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:11434", "listen address of the Ollama API")
	fs.StringVar(&o.controlAddr, "control-addr", "", "separate listen address for /_sim/ (default: served with the API)")
	fs.StringVar(&o.cfg.Name, "name", "", "server name in stats and request records")
	fs.StringVar(&o.cfg.Version, "version", ollamasim.DefaultVersion, "version reported by /api/version")
	fs.StringVar(&o.models, "models", "default", `local models: "default", comma-separated names, or @file.json`)
	fs.StringVar(&o.registry, "registry", "default", `pullable models: "default", "none", comma-separated names, or @file.json`)
	fs.StringVar(&o.loaded, "loaded", "", "comma-separated models loaded at start")
	fs.IntVar(&o.prefixCache, "prefix-cache", 0, "prompt prefixes each model remembers (0: no prefix cache)")
	fs.DurationVar(&o.cfg.TTFT, "ttft", 100*time.Millisecond, "base time to first token")
	fs.DurationVar(&o.cfg.PromptTokenCost, "prompt-token-cost", 200*time.Microsecond, "extra time to first token per uncached prompt token")
	fs.DurationVar(&o.cfg.CachedTokenCost, "cached-token-cost", 0, "time per prompt token found in the prefix cache")
	fs.Float64Var(&o.cfg.TokensPerSecond, "tokens-per-second", 50, "generation speed (0: no delay)")
	fs.IntVar(&o.cfg.Parallel, "parallel", ollamasim.DefaultParallel, "generations at once per model (OLLAMA_NUM_PARALLEL)")
	fs.IntVar(&o.cfg.MaxQueue, "max-queue", ollamasim.DefaultMaxQueue, "requests waiting per model before 503 (OLLAMA_MAX_QUEUE; -1: none)")
	fs.DurationVar(&o.cfg.LoadDuration, "load", 500*time.Millisecond, "time to load a model")
	fs.DurationVar(&o.cfg.KeepAlive, "keep-alive", ollamasim.DefaultKeepAlive, "default keep_alive")
	fs.DurationVar(&o.cfg.PullDuration, "pull-duration", 3*time.Second, "download time of a pull")
	fs.IntVar(&o.cfg.ResponseTokens, "response-tokens", 0, "fixed answer length in tokens (0: 16 to 64, by prompt)")
	fs.IntVar(&o.cfg.ThinkingTokens, "thinking-tokens", 0, "reasoning length at medium effort (0: default)")
	fs.BoolVar(&o.cfg.Faults.Refuse, "refuse", false, "fault: refuse connections")
	fs.BoolVar(&o.cfg.Faults.Fail, "fail", false, "fault: answer inference calls with an error")
	fs.IntVar(&o.cfg.Faults.FailStatus, "fail-status", 500, "status of the fail fault")
	fs.IntVar(&o.dropAfter, "drop-after", -1, "fault: drop connections after N chunks (-1: off)")
	fs.IntVar(&o.stallAfter, "stall-after", -1, "fault: stall responses after N chunks (-1: off)")
	fs.StringVar(&o.cfg.Faults.Model, "fault-model", "", "limit fail, drop and stall to this model")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 5*time.Second, "grace period for requests in flight on SIGINT/SIGTERM")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, o.complete()
}

// complete turns the model and fault flags into the Config.
func (o *options) complete() error {
	var err error
	f := &o.cfg.Faults
	f.Drop, f.DropAfter = o.dropAfter >= 0, max(o.dropAfter, 0)
	f.Stall, f.StallAfter = o.stallAfter >= 0, max(o.stallAfter, 0)
	if o.cfg.Models, err = parseModels(o.models, ollamasim.DefaultModels()); err != nil {
		return fmt.Errorf("--models: %w", err)
	}
	if o.cfg.Registry, err = parseModels(o.registry, ollamasim.DefaultRegistry()); err != nil {
		return fmt.Errorf("--registry: %w", err)
	}
	loaded := splitList(o.loaded)
	for i := range o.cfg.Models {
		m := &o.cfg.Models[i]
		if m.PrefixCache == 0 {
			m.PrefixCache = o.prefixCache
		}
		if loaded[ollamasim.NormalizeName(m.Name)] {
			m.Loaded = true
			delete(loaded, ollamasim.NormalizeName(m.Name))
		}
	}
	for name := range loaded {
		return fmt.Errorf("--loaded: %s is not among --models", name)
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	o.cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	sim := ollamasim.New(o.cfg)
	url, err := sim.Start(o.addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ollama-sim listening on %s\n", url)
	var control *http.Server
	if o.controlAddr != "" {
		ln, err := net.Listen("tcp", o.controlAddr)
		if err != nil {
			_ = sim.Close()
			return err
		}
		control = &http.Server{Handler: sim.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = control.Serve(ln) }()
		fmt.Fprintf(stdout, "ollama-sim control on http://%s/_sim/\n", ln.Addr())
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "ollama-sim shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if control != nil {
		_ = control.Shutdown(sctx)
	}
	if err := sim.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
