package cli

import "github.com/spf13/cobra"

func (g *globals) snapshotCmd() *cobra.Command {
	return group(&cobra.Command{Use: "snapshot", Short: "TODO"})
}
