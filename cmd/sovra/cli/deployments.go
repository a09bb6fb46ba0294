package cli

import "github.com/spf13/cobra"

func (g *globals) deploymentCmd() *cobra.Command {
	return group(&cobra.Command{Use: "deployments", Short: "TODO"})
}
