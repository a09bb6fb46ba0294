package main

import (
	"github.com/spf13/pflag"

	"github.com/sovra/sovra/node"
)

// registerBackendPolicy adds the flags that say what clients may ask of
// the backend beyond the deployments (see "What clients may ask of the
// backend" in README.md).
func (s *settings) registerBackendPolicy(fs *pflag.FlagSet, def node.Config) {
	fs.BoolVar(&s.node.ServeUndeployed, "serve-undeployed", def.ServeUndeployed,
		"also serve models that no deployment names, from the local Ollama (otherwise 404); a node without --raft-addr has no deployments and serves nothing without it; Ollama cloud models are refused either way")
}
