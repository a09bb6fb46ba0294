package cli

import "github.com/spf13/cobra"

func (g *globals) operatorCmd() *cobra.Command {
	return group(&cobra.Command{Use: "operator", Short: "TODO"})
}
