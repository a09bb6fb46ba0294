package cli

import "github.com/spf13/cobra"

func (g *globals) nodeCmd() *cobra.Command {
	return group(&cobra.Command{Use: "nodes", Short: "TODO"})
}
