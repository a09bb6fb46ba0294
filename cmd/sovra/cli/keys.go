package cli

import "github.com/spf13/cobra"

func (g *globals) keyCmd() *cobra.Command {
	return group(&cobra.Command{Use: "keys", Short: "TODO"})
}
