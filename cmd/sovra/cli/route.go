package cli

import "github.com/spf13/cobra"

func (g *globals) routeCmd() *cobra.Command {
	return group(&cobra.Command{Use: "route", Short: "TODO"})
}
