package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sovra/sovra/node"
)

func newServe() *cobra.Command {
	return nodeCommand(&cobra.Command{
		Use:   "serve",
		Short: "Run a sovra node beside this host's Ollama",
	}, node.DefaultConfig(), func(cmd *cobra.Command, cfg node.Config, log *zap.Logger) error {
		n, err := node.New(cfg, log)
		if err != nil {
			return usageError{err}
		}
		stop := reloadOnHangup(cmd.Context(), n)
		defer stop()
		if err := n.Run(cmd.Context()); err != nil {
			log.Error("stopped with an error", zap.Error(err))
			return err
		}
		log.Info("stopped")
		return nil
	})
}

// reloadOnHangup reads the API's certificate files again on each SIGHUP
// until stop is called.
func reloadOnHangup(ctx context.Context, n *node.Node) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				n.ReloadTLS()
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		cancel()
		<-done
	}
}
