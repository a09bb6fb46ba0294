package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/backend/ollama"
)

func newDev() *cobra.Command {
	def := node.DefaultConfig()
	def.NodeID = "dev"
	def.DataDir = "" // a temporary directory unless given
	def.Cluster.RaftAddr = "127.0.0.1:0"
	def.Cluster.Bootstrap = true
	def.ServeUndeployed = true // a newcomer tries whatever the local Ollama or the simulator has
	return nodeCommand(&cobra.Command{
		Use:   "dev",
		Short: "Run a single zero-config node; without a local Ollama it uses the built-in simulator",
		Long: "dev runs one node for trying sovra out. It uses the Ollama at --ollama if one answers;\n" +
			"otherwise it starts the built-in simulated Ollama with a few small models and says so.\n" +
			"Unless --admin-token is given it makes a new management token each run and prints it.",
	}, def, func(cmd *cobra.Command, cfg node.Config, log *zap.Logger) error {
		return runDev(cmd.Context(), cfg, log, cmd.OutOrStdout())
	}, func(cfg *node.Config) {
		if cfg.Cluster.Token == "" {
			// dev is a cluster of one: its secret need not be known.
			cfg.Cluster.Token = rand.Text()
		}
	})
}

// simulatedGPU is the GPU dev declares when it runs on the simulator.
const simulatedGPU = "1xsimulated:24GiB"

func runDev(ctx context.Context, cfg node.Config, log *zap.Logger, out io.Writer) error {
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "sovra-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if !ollamaAnswers(ctx, cfg.OllamaURL) {
		url, stop, err := startSimulator(log)
		if err != nil {
			return err
		}
		defer stop()
		log.Warn("no Ollama answers at "+cfg.OllamaURL+": using the built-in SIMULATED backend (deterministic fake text, no real model)",
			zap.String("simulator", url))
		cfg.OllamaURL = url
		if cfg.Cluster.GPUs == "" {
			// The simulator needs no GPU, but the scheduler places
			// deployments only on nodes that have some.
			cfg.Cluster.GPUs = simulatedGPU
			log.Info("declared a simulated GPU so that deployments can be placed", zap.String("gpu", simulatedGPU))
		}
	} else {
		log.Info("using the local Ollama", zap.String("ollama", cfg.OllamaURL))
	}
	given := cfg.AdminToken != ""
	if !given {
		tok, err := auth.NewToken()
		if err != nil {
			return err
		}
		cfg.AdminToken = tok
	}
	n, err := node.New(cfg, log)
	if err != nil {
		return usageError{err}
	}
	if err := n.Start(); err != nil {
		return err
	}
	printBanner(out, n.URL(), firstModel(ctx, cfg.OllamaURL), cfg.AdminToken, given)
	<-ctx.Done()
	return n.Stop(context.Background())
}

// printBanner tells a newcomer how to call the node: its management token
// (unless the operator gave it: then it is not printed), the environment
// of OpenAI SDKs and a curl line. It goes to stdout, never to the log.
func printBanner(out io.Writer, url, model, token string, given bool) {
	export, note := "export TOKEN="+token, " (new each run)"
	if given {
		export, note = "export TOKEN=...   # the --admin-token you gave", ""
	}
	fmt.Fprintf(out, `
sovra dev is up at %[1]s. Every call needs its management token%[4]s:

  %[2]s
  export OPENAI_API_KEY=$TOKEN OPENAI_BASE_URL=%[1]s/v1
  export SOVRA_TOKEN=$TOKEN SOVRA_ADDR=%[1]s   # for the admin CLI: sovra status, sovra deploy ...

Try a streamed answer:

  curl -N %[1]s/v1/chat/completions -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"model":"%[3]s","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

`, url, export, model, note)
}

// ollamaAnswers reports whether an Ollama server answers at url.
func ollamaAnswers(ctx context.Context, url string) bool {
	be, err := ollama.New(url, nil)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return be.Heartbeat(ctx) == nil
}

// firstModel names a chat model the backend has, for the example command.
func firstModel(ctx context.Context, url string) string {
	be, err := ollama.New(url, nil)
	if err != nil {
		return "llama3.2:1b"
	}
	list, err := be.List(ctx)
	if err != nil || len(list.Models) == 0 {
		return "llama3.2:1b"
	}
	return list.Models[0].Name
}

// startSimulator serves the simulated Ollama on a free loopback port.
func startSimulator(log *zap.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("start the simulator: %w", err)
	}
	sim := ollamasim.New(ollamasim.Config{Name: "dev", TTFT: 120 * time.Millisecond, TokensPerSecond: 30})
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("simulator stopped", zap.Error(err))
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return "http://" + ln.Addr().String(), stop, nil
}
