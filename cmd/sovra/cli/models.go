package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

func (g *globals) modelCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:     "model",
		Aliases: []string{"models"},
		Short:   "The model catalog: the figures the scheduler sizes replicas by",
		Long: `The catalog holds, for each model, the figures that size its replicas (parameters,
layers, heads, quantization, context). Many open-weight models are built in;
register others (a fine-tune, a private model) with ` + "`sovra model register`" + `.`,
	})
	c.AddCommand(g.modelListCmd(), g.modelShowCmd(), g.modelRegisterCmd(), g.modelUnregisterCmd(), g.modelExportCmd(), g.modelImportCmd())
	return c
}

func (g *globals) modelListCmd() *cobra.Command {
	var registered bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the catalog's models and the memory a replica of each needs",
		Args:  noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			all, err := cl.Catalog(ctx)
			if err != nil {
				return err
			}
			models := all[:0:0]
			for _, m := range all {
				if !registered || !m.Builtin {
					models = append(models, m)
				}
			}
			return g.print(models, func(t *table) {
				t.head("NAME", "ARCHITECTURE", "PARAMETERS", "QUANT", "CONTEXT", "MEMORY", "SOURCE", "+ALIASES", "+LICENSE")
				for _, m := range models {
					t.row(m.Name, orDash(m.Architecture), paramsText(m.Parameters, m.ActiveParameters), orDash(m.Quantization),
						strconv.Itoa(m.Context), bytesText(m.MemoryBytes), sourceText(m.Builtin), orDash(strings.Join(m.Aliases, ",")), orDash(m.License))
				}
			})
		}),
	}
	c.Flags().BoolVar(&registered, "registered", false, "only the models registered in this cluster")
	return c
}

func (g *globals) modelShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a model's figures",
		Args:  exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			m, err := cl.CatalogEntry(ctx, args[0])
			if err != nil {
				return modelHint(err)
			}
			return g.print(m, func(*table) { showModel(g.io.Out, m) })
		}),
	}
}

func showModel(w io.Writer, m *client.CatalogEntry) {
	rows := [][2]string{
		{"Name", m.Name}, {"Aliases", orDash(strings.Join(m.Aliases, ", "))}, {"Source", sourceText(m.Builtin)},
		{"Family", orDash(m.Family)}, {"Architecture", m.Architecture}, {"Parameters", paramsText(m.Parameters, m.ActiveParameters)},
		{"Experts", fmt.Sprintf("%d (%d used)", m.Experts, m.ExpertsUsed)}, {"Quantization", orDash(m.Quantization)},
		{"File size", bytesText(m.FileSize)}, {"Layers", strconv.Itoa(m.Layers)}, {"Embedding", strconv.Itoa(m.Embedding)},
		{"Heads", fmt.Sprintf("%d (%d KV)", m.Heads, m.KVHeads)}, {"Context", fmt.Sprintf("%d (sized for %d)", m.ContextLength, m.Context)},
		{"Memory", bytesText(m.MemoryBytes) + " per replica"}, {"License", orDash(m.License)}, {"Figures from", orDash(m.Source)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-13s %s\n", r[0]+":", printable(r[1]))
	}
}

func (g *globals) modelRegisterCmd() *cobra.Command {
	var file string
	var replace bool
	c := &cobra.Command{
		Use:   "register -f FILE",
		Short: "Register a model's figures from a JSON or YAML file (- for stdin)",
		Long: `Register a model the catalog lacks. The file holds its figures under the names
` + "`sovra model show -o yaml`" + ` prints: name, architecture, parameters, layers, embedding,
heads, kv_heads, head_dim_k, head_dim_v, context_length, quantization, file_size, ...
Changing a registered model's figures needs --replace.`,
		Example: `  sovra model show llama3.1:8b -o yaml > m.yaml   # edit name and figures
  sovra model register -f m.yaml`,
		Args: noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			spec, err := g.readSpec(file)
			if err != nil {
				return err
			}
			m, err := cl.RegisterModel(g.mutation(ctx), spec, replace)
			if errorsIsConflict(err) {
				return wrapHint(err, "it is registered already: --replace changes its figures")
			}
			if err != nil {
				return err
			}
			return g.print(m, func(*table) {
				fmt.Fprintf(g.io.Out, "registered %s: %s per replica at context %d\n", m.Name, bytesText(m.MemoryBytes), m.Context)
			})
		}),
	}
	c.Flags().StringVarP(&file, "file", "f", "", "JSON or YAML file of the model's figures (- for stdin)")
	c.Flags().BoolVar(&replace, "replace", false, "change the figures of a registered model")
	return c
}

// readSpec reads a model's figures from JSON or YAML. The spec is decoded
// through JSON so that both take the API's field names, and unknown
// fields are refused.
func (g *globals) readSpec(file string) (client.ModelSpec, error) {
	var spec client.ModelSpec
	if file == "" {
		return spec, UsageError("give the model's figures with -f FILE (- for stdin)")
	}
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(g.io.In, 1<<20))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return spec, UsageError("-f: %v", err)
	}
	js, err := yamlToJSON(b)
	if err != nil {
		return spec, UsageError("%s: %v", file, err)
	}
	var entry struct {
		client.CatalogEntry
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entry); err != nil {
		return spec, UsageError("%s: %v", file, err)
	}
	return entry.ModelSpec, nil
}

func (g *globals) modelUnregisterCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unregister NAME",
		Short: "Remove a registered model from the catalog",
		Args:  exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			if err := cl.UnregisterModel(g.mutation(ctx), args[0]); err != nil {
				return modelHint(err)
			}
			if g.structured() {
				return g.print(map[string]string{"deleted": args[0]}, nil)
			}
			fmt.Fprintf(g.io.Out, "unregistered %s\n", args[0])
			return nil
		}),
	}
}

func modelHint(err error) error {
	if isNotFound(err) {
		return wrapHint(err, "`sovra model list` lists the catalog")
	}
	return err
}

func sourceText(builtin bool) string {
	if builtin {
		return "built in"
	}
	return "registered"
}

// paramsText is a parameter count in billions, with the active share of
// a mixture of experts.
func paramsText(total, active uint64) string {
	s := fmt.Sprintf("%.1fB", float64(total)/1e9)
	if active > 0 && active != total {
		s += fmt.Sprintf(" (%.1fB active)", float64(active)/1e9)
	}
	return s
}
