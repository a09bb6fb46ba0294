package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	ollamaapi "github.com/ollama/ollama/api"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sovra/sovra/node/backend/ollama"
	"github.com/sovra/sovra/node/modelshare"
)

// Model export and import work on the host they run on, with its Ollama
// and models directory: the way to move a model into a site with no
// network. Once one node's Ollama has it, the others copy it from there.

func (g *globals) modelExportCmd() *cobra.Command {
	var dir string
	var force bool
	c := &cobra.Command{
		Use:   "export NAME FILE",
		Short: "Write a model of this host's Ollama to a bundle file (- for stdout), for a site with no network",
		Long: `Write a model of this host's Ollama, read from its models directory, to one bundle
file: its manifest and every blob, each with its digest. Carry the file to a host of
the other site and run ` + "`sovra model import FILE`" + ` there.`,
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return g.exportBundle(args[0], args[1], modelshare.ModelsDir(dir), force)
		},
	}
	c.Flags().StringVar(&dir, "ollama-models", "", "the Ollama models directory (default: $OLLAMA_MODELS, else ~/.ollama/models)")
	c.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return c
}

func (g *globals) exportBundle(name, file, dir string, force bool) error {
	if file == "-" {
		return modelshare.ExportBundle(g.io.Out, dir, name)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_EXCL
	if force {
		flags = os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	}
	f, err := os.OpenFile(file, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return UsageError("%s exists: --force replaces it", file)
	}
	if err != nil {
		return err
	}
	err = modelshare.ExportBundle(f, dir, name)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return err
	}
	st, _ := os.Stat(file)
	fmt.Fprintf(g.io.Err, "wrote %s to %s (%s)\n", name, file, bytesText(uint64(st.Size())))
	return nil
}

func (g *globals) modelImportCmd() *cobra.Command {
	var name, ollamaURL string
	c := &cobra.Command{
		Use:   "import FILE",
		Short: "Put a model bundle, a GGUF file or a model of an Ollama models directory on this host's Ollama",
		Long: `Put a model on this host's Ollama: a bundle written by ` + "`sovra model export`" + ` (every digest
is checked, by sovra and again by Ollama), a GGUF file (give --name), or the model
--name of an Ollama models directory (another Ollama's, copied or mounted). Other nodes
copy the model from this one when a deployment places it on them; the scheduler
reads its figures from this Ollama, so it can be deployed at once:
` + "`sovra deploy NAME`" + `.`,
		Example: `  sovra model import tiny.bundle
  sovra model import ./my-finetune.Q4_K_M.gguf --name acme/finetune:q4
  sovra model import /mnt/usb/ollama/models --name llama3.1:8b`,
		Args: exactArgs(1),
		RunE: run(func(ctx context.Context, args []string) error {
			return g.importModel(ctx, args[0], name, ollamaURL)
		}),
	}
	c.Flags().StringVar(&name, "name", "", "the model's name (required for a GGUF file; default for a bundle: the name it was exported under)")
	c.Flags().StringVar(&ollamaURL, "ollama", "", "this host's Ollama (default: $OLLAMA_HOST, else http://127.0.0.1:11434)")
	return c
}

func (g *globals) importModel(ctx context.Context, file, name, ollamaURL string) error {
	base, err := ollamaBase(firstOf(ollamaURL, g.io.Getenv("OLLAMA_HOST")))
	if err != nil {
		return err
	}
	if isGGUF(file) {
		if name == "" {
			return UsageError("a GGUF file needs --name")
		}
		oc := ollamaapi.NewClient(base, http.DefaultClient)
		if err := modelshare.ImportGGUF(ctx, oc, file, name); err != nil {
			return err
		}
		fmt.Fprintf(g.io.Out, "imported %s into the Ollama at %s: `sovra deploy %s` serves it\n", name, base, name)
		return nil
	}
	b, cleanup, err := openModelSource(file, name)
	if err != nil {
		return err
	}
	defer cleanup()
	o, err := ollama.New(base.String(), &http.Client{Transport: ollama.NewTransport()})
	if err != nil {
		return err
	}
	as := firstOf(name, b.Model)
	last := time.Time{}
	err = b.Import(ctx, o, as, zap.NewNop(), func(p ollamaapi.ProgressResponse) error {
		if time.Since(last) > time.Second && p.Total > 0 {
			last = time.Now()
			fmt.Fprintf(g.io.Err, "%s %s / %s\n", p.Status, bytesText(uint64(p.Completed)), bytesText(uint64(p.Total)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.io.Out, "imported %s into the Ollama at %s: `sovra deploy %s` serves it\n", as, base, as)
	return nil
}

// openModelSource reads a bundle file into a temporary directory (every
// digest checked), or takes a directory as an Ollama models directory
// holding the model name.
func openModelSource(path, name string) (*modelshare.Bundle, func(), error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, UsageError("%v", err)
	}
	if st.IsDir() {
		if name == "" {
			return nil, nil, UsageError("importing from an Ollama models directory needs --name: the model to take from it")
		}
		return &modelshare.Bundle{Dir: path, Model: name}, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, UsageError("%v", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "sovra-bundle-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	b, err := modelshare.ReadBundle(f, tmp)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return b, cleanup, nil
}

// ollamaBase is the URL of this host's Ollama.
func ollamaBase(s string) (*url.URL, error) {
	if s == "" {
		s = "http://127.0.0.1:11434"
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		return u, nil
	}
	u, err := url.Parse("http://" + s)
	if err != nil || u.Host == "" {
		return nil, UsageError("--ollama %q: give host:port or a URL", s)
	}
	return u, nil
}

// isGGUF reports whether the file starts as a GGUF file does.
func isGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "GGUF"
}
