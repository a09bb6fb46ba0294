// Package cli is sovra's admin command line: the commands an operator runs
// from a terminal against any node of a cluster (status, node, deploy,
// deployment, model, key, usage, audit, snapshot, operator, route,
// context). Each command is one call or a short sequence of calls of the
// Go client (package client); this package owns how the answers are shown
// (tables, JSON, YAML, live progress), how a node and its credential are
// found (flags, environment, context file) and the exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

// Exit codes scripts can rely on.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitNotReady = 3 // could not place, or not ready in time
)

// ExitCodesHelp documents the exit codes in --help.
const ExitCodesHelp = `Exit codes:
  0  success
  1  error (the message says what failed and what to do next)
  2  usage error (unknown command or flag, bad argument)
  3  could not place, or not ready in time (deploy, scale, drain)`

// ExitErr is an error with the exit code it ends the program with.
type ExitErr struct {
	Code int
	Err  error
}

func (e *ExitErr) Error() string { return e.Err.Error() }
func (e *ExitErr) Unwrap() error { return e.Err }

// UsageError marks a mistake in the command line: exit code 2.
func UsageError(format string, a ...any) error {
	return &ExitErr{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// notReady ends the program with exit code 3.
func notReady(format string, a ...any) error {
	return &ExitErr{Code: ExitNotReady, Err: fmt.Errorf(format, a...)}
}

// Code is the exit code err ends the program with.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitErr
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitError
}

// IO is where the commands read and write: the process's own streams in
// the binary, buffers in tests.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Getenv reads the environment (os.Getenv in the binary).
	Getenv func(string) string
}

// StdIO is the process's streams and environment.
func StdIO() IO {
	return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv}
}

// Commands returns the admin commands, each with the connection and output
// flags, to be added to the root command.
func Commands(sio IO) []*cobra.Command {
	g := &globals{io: sio}
	cmds := []*cobra.Command{
		g.statusCmd(),
		g.nodeCmd(),
		g.deployCmd(),
		g.deploymentCmd(),
		g.modelCmd(),
		g.keyCmd(),
		g.usageCmd(),
		g.auditCmd(),
		g.snapshotCmd(),
		g.operatorCmd(),
		g.routeCmd(),
		g.contextCmd(),
	}
	for _, c := range cmds {
		g.bind(c)
		c.GroupID = GroupID
	}
	return cmds
}

// GroupID groups the admin commands in the root's help.
const GroupID = "admin"

// run adapts a command body to cobra: the body gets the command's
// context and its arguments.
func run(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error { return fn(c.Context(), args) }
}

// call adapts a command body that calls the node: it checks --output,
// makes the client and turns the error into a message with a next step.
func (g *globals) call(fn func(ctx context.Context, cl *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		if err := g.checkOutput(); err != nil {
			return err
		}
		cl, t, err := g.client()
		if err != nil {
			return err
		}
		return g.explain(fn(c.Context(), cl, args), t)
	}
}
