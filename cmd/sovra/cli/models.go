package cli

import "github.com/spf13/cobra"

func (g *globals) modelCmd() *cobra.Command {
	return group(&cobra.Command{Use: "models", Short: "TODO"})
}
