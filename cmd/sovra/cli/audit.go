package cli

import "github.com/spf13/cobra"

func (g *globals) auditCmd() *cobra.Command {
	return group(&cobra.Command{Use: "audit", Short: "TODO"})
}
