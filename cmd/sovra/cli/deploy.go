package cli

import "github.com/spf13/cobra"

func (g *globals) deployCmd() *cobra.Command {
	return group(&cobra.Command{Use: "deploy", Short: "TODO"})
}
