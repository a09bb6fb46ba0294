package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sovra/sovra/node"
)

func newServe() *cobra.Command {
	var s settings
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a sovra node beside this host's Ollama",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := s.resolve(cmd); err != nil {
				return err
			}
			log, err := newLogger(s.logFormat, s.logLevel)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			n, err := node.New(s.node, log)
			if err != nil {
				return usageError{err}
			}
			if err := n.Run(cmd.Context()); err != nil {
				log.Error("stopped with an error", zap.Error(err))
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
	s.register(cmd.Flags(), node.DefaultConfig())
	return cmd
}
