// Command sovra is the sovra binary: the node (`serve`), a zero-config single
// node for newcomers (`dev`) and the admin CLI that drives a cluster from a
// terminal (package cli).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/cmd/sovra/cli"
	"github.com/sovra/sovra/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, cli.StdIO(), os.Args[1:])
	stop()
	os.Exit(code)
}

// execute runs the command line args and returns the exit code; errors
// go to sio.Err.
func execute(ctx context.Context, sio cli.IO, args []string) int {
	root := newRoot(sio)
	root.SetArgs(args)
	root.SetIn(sio.In)
	root.SetOut(sio.Out)
	root.SetErr(sio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return cli.ExitOK
	}
	fmt.Fprintln(sio.Err, "sovra:", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		return cli.ExitUsage
	}
	return cli.Code(err)
}

// usageError is a mistake in the command line or configuration.
type usageError struct{ error }

func newRoot(sio cli.IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "sovra",
		Short: "A self-hosted serving cluster for open-weight language models",
		Long: `sovra serves open-weight language models from a cluster of GPU hosts, each
running sovra beside its Ollama. The same binary runs a node (serve, dev) and
drives a cluster from a terminal (status, node, deploy, ...).

` + cli.ExitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddGroup(&cobra.Group{ID: "node", Title: "Run a node:"}, &cobra.Group{ID: cli.GroupID, Title: "Drive a cluster:"})
	for _, c := range []*cobra.Command{newServe(), newDev(), newTLS()} {
		c.GroupID = "node"
		root.AddCommand(c)
	}
	root.AddCommand(cli.Commands(sio)...)
	root.AddCommand(newVersion())
	root.AddCommand(newHealthcheck())
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "sovra %s\n", version.Version)
		},
	}
}
