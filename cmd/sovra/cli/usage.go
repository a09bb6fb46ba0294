package cli

import "github.com/spf13/cobra"

func (g *globals) usageCmd() *cobra.Command {
	return group(&cobra.Command{Use: "usage", Short: "TODO"})
}
