package main

import (
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
		if err := n.Run(cmd.Context()); err != nil {
			log.Error("stopped with an error", zap.Error(err))
			return err
		}
		log.Info("stopped")
		return nil
	})
}
