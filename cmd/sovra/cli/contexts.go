package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// contextFile is the CLI's file of clusters: mode 0600, since it holds
// their tokens.
type contextFile struct {
	Current  string                     `yaml:"current,omitempty"`
	Contexts map[string]*clusterContext `yaml:"contexts"`
}

// clusterContext is how to reach one cluster.
type clusterContext struct {
	Addr  string `yaml:"addr"`
	Token string `yaml:"token,omitempty"`
	// CACert is the PEM of the CA the cluster's certificate is signed by.
	CACert string `yaml:"ca_cert,omitempty"`
}

// ContextView is a context as `sovra context list` shows it: never its
// token.
type ContextView struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Addr    string `json:"addr"`
	Token   bool   `json:"token"`
	CA      bool   `json:"ca"`
}

func loadContexts(sio IO) (*contextFile, error) {
	path := contextPath(sio)
	f := &contextFile{Contexts: map[string]*clusterContext{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(sio.Err, "warning: %s holds tokens and is readable by others: chmod 600 %s\n", path, path)
	}
	if err := yaml.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("context file %s: %w", path, err)
	}
	if f.Contexts == nil {
		f.Contexts = map[string]*clusterContext{}
	}
	return f, nil
}

// save writes the file through a temporary file, mode 0600.
func (f *contextFile) save(sio IO) error {
	path := contextPath(sio)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".contexts-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (g *globals) contextCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:   "context",
		Short: "Name clusters and switch between them",
		Long: `A context names a cluster: a node's address, the token and the CA to trust.
They live in $SOVRA_CONTEXT_FILE, else ~/.config/sovra/contexts.yaml (mode 0600).
--addr, --token-file and --ca-cert, and SOVRA_ADDR, SOVRA_TOKEN and SOVRA_CA_CERT,
override the context's.`,
	})
	c.AddCommand(g.contextAddCmd(), g.contextUseCmd(), g.contextListCmd(), g.contextRemoveCmd())
	return c
}

func (g *globals) contextAddCmd() *cobra.Command {
	var tokenStdin, use bool
	c := &cobra.Command{
		Use:   "add NAME --addr ADDR [--token-file FILE | --token-stdin] [--ca-cert FILE]",
		Short: "Add or replace a context (the token from a file, stdin or SOVRA_TOKEN, never a flag)",
		Args:  exactArgs(1),
	}
	c.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token from standard input")
	c.Flags().BoolVar(&use, "use", false, "make it the current context")
	c.RunE = run(func(_ context.Context, args []string) error {
		name := args[0]
		if !validName(name) {
			return UsageError("context name %q: use letters, digits and . _ -", name)
		}
		cc := &clusterContext{Addr: firstOf(g.addr, g.io.Getenv("SOVRA_ADDR"))}
		if cc.Addr == "" {
			return UsageError("give the node's address with --addr")
		}
		var err error
		if cc.Addr, err = normalizeAddr(cc.Addr, g.caCert != ""); err != nil {
			return err
		}
		if cc.Token, err = g.newContextToken(tokenStdin); err != nil {
			return err
		}
		if g.caCert != "" {
			pem, err := os.ReadFile(g.caCert)
			if err != nil {
				return UsageError("--ca-cert: %v", err)
			}
			cc.CACert = string(pem)
		}
		f, err := loadContexts(g.io)
		if err != nil {
			return err
		}
		f.Contexts[name] = cc
		if use || f.Current == "" {
			f.Current = name
		}
		if err := f.save(g.io); err != nil {
			return err
		}
		fmt.Fprintf(g.io.Out, "context %s: %s\n", name, cc.Addr)
		return nil
	})
	return c
}

// newContextToken reads the token a new context keeps.
func (g *globals) newContextToken(stdin bool) (string, error) {
	switch {
	case stdin:
		line, err := bufio.NewReader(g.io.In).ReadString('\n')
		if t := strings.TrimSpace(line); t != "" {
			return t, nil
		}
		return "", UsageError("--token-stdin: no token on standard input (%v)", err)
	case g.tokenFile != "":
		return readSecretFile(g.tokenFile, "--token-file")
	}
	return strings.TrimSpace(g.io.Getenv("SOVRA_TOKEN")), nil
}

func (g *globals) contextUseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make a context the current one",
		Args:  exactArgs(1),
		RunE: g.editContexts(func(f *contextFile, name string) string {
			f.Current = name
			return "current context: " + name
		}),
	}
}

func (g *globals) contextRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Forget a context",
		Args:  exactArgs(1),
		RunE: g.editContexts(func(f *contextFile, name string) string {
			delete(f.Contexts, name)
			if f.Current == name {
				f.Current = ""
			}
			return "removed context " + name
		}),
	}
}

// editContexts runs a change of the context named by the one argument,
// which must exist, saves the file and prints what change says.
func (g *globals) editContexts(change func(f *contextFile, name string) string) func(*cobra.Command, []string) error {
	return run(func(_ context.Context, args []string) error {
		f, err := loadContexts(g.io)
		if err != nil {
			return err
		}
		if _, ok := f.Contexts[args[0]]; !ok {
			return UsageError("no context %q: `sovra context list` lists them", args[0])
		}
		msg := change(f, args[0])
		if err := f.save(g.io); err != nil {
			return err
		}
		_, err = fmt.Fprintln(g.io.Out, msg)
		return err
	})
}

func (g *globals) contextListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the contexts; * marks the current one",
		Args:  noArgs,
		RunE: run(func(_ context.Context, _ []string) error {
			f, err := loadContexts(g.io)
			if err != nil {
				return err
			}
			views := []ContextView{}
			for name, cc := range f.Contexts {
				views = append(views, ContextView{Name: name, Current: name == f.Current, Addr: cc.Addr, Token: cc.Token != "", CA: cc.CACert != ""})
			}
			slices.SortFunc(views, func(a, b ContextView) int { return strings.Compare(a.Name, b.Name) })
			return g.print(views, func(t *table) {
				t.head("CURRENT", "NAME", "ADDR", "TOKEN", "CA")
				for _, v := range views {
					t.row(mark(v.Current, "*"), v.Name, v.Addr, yesNo(v.Token), yesNo(v.CA))
				}
			})
		}),
	}
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
