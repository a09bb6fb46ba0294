package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
)

func (g *globals) snapshotCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:   "snapshot",
		Short: "Save, restore and inspect snapshots of the cluster's state",
		Long: `A snapshot is the whole replicated state as one JSON file: nodes,
deployments and their placements, registered models, API keys (their
secrets' hashes), quotas, usage, the audit log and the cluster CA with its
private key. Keep snapshots as secret as the management token. The raft
membership is not part of it.`,
	})
	c.AddCommand(g.snapshotSaveCmd(), g.snapshotRestoreCmd(), g.snapshotInspectCmd())
	return c
}

func (g *globals) snapshotSaveCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "save FILE",
		Short: "Save the cluster's state to FILE (mode 0600; - for stdout)",
		Long: `Save the cluster's state, as of a linearizable read, to FILE, written with
mode 0600: it holds the keys' hashes and the cluster CA's private key. An
existing FILE is kept unless --force. FILE - writes the snapshot to stdout.`,
		Args: exactArgs(1),
	}
	c.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		path := args[0]
		if _, err := os.Lstat(path); err == nil && path != "-" && !force {
			return fmt.Errorf("%s exists: give --force to overwrite it, or another file", path)
		}
		data, err := cl.SaveSnapshot(ctx)
		if err != nil {
			return err
		}
		if path == "-" {
			_, err := g.io.Out.Write(data)
			return err
		}
		if err := writeSecretFile(path, data, force); err != nil {
			return err
		}
		sum, err := summarize(data, path)
		if err != nil {
			return err
		}
		return g.report(sum, func(w io.Writer) {
			fmt.Fprintf(w, "saved the cluster's state at index %d (%d bytes) to %s: keep it secret, it holds key hashes and the cluster CA's key\n",
				sum.Index, sum.Bytes, path)
		})
	})
	return c
}

// writeSecretFile writes data to a new file of mode 0600, or with force
// over an existing one (which then gets mode 0600).
func writeSecretFile(path string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: give --force to overwrite it, or another file", path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (g *globals) snapshotRestoreCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "restore FILE --force",
		Short: "Replace the cluster's whole state by a snapshot (- reads stdin)",
		Long: `Replace the cluster's whole state, on every node, by a snapshot saved with
sovra snapshot save: deployments, keys, usage and audit log become the
snapshot's. The cluster refuses unless --force. The raft membership stays as
it is. The file is checked here first; sovra snapshot inspect shows what it
holds.`,
		Args: exactArgs(1),
	}
	c.Flags().BoolVar(&force, "force", false, "confirm that the cluster's state is to be replaced")
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		data, sum, err := g.readSummary(args[0])
		if err != nil {
			return err
		}
		if err := cl.RestoreSnapshot(g.mutation(ctx), data, force); err != nil {
			return restoreHint(err, sum)
		}
		return g.report(sum, func(w io.Writer) {
			fmt.Fprintf(w, "restored the cluster's state from %s (index %d: %d nodes, %d deployments, %d keys)\n",
				args[0], sum.Index, sum.Nodes, sum.Deployments, sum.APIKeys)
		})
	})
	return c
}

func restoreHint(err error, sum *SnapshotSummary) error {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Code == "restore_not_forced" {
		return fmt.Errorf("the cluster refused the restore: it replaces the cluster's whole state by the snapshot's "+
			"(index %d: %d nodes, %d deployments, %d keys); rerun with --force to confirm", sum.Index, sum.Nodes, sum.Deployments, sum.APIKeys)
	}
	return err
}

func (g *globals) snapshotInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Summarize a snapshot file (- reads stdin); needs no node",
		Long: `Check a snapshot file and summarize it: its format and version, the raft
index of the last command it holds, and how many nodes, deployments,
placements, registered models, keys, audit entries and usage rows it has. It
reads the file only: no node is called. (A snapshot holds no raft term.)`,
		Args: exactArgs(1),
		RunE: run(func(_ context.Context, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			_, sum, err := g.readSummary(args[0])
			if err != nil {
				return err
			}
			return g.report(sum, func(w io.Writer) { sum.details().write(w) })
		}),
	}
}

// readSnapshot reads a snapshot file, or stdin for "-".
func (g *globals) readSnapshot(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(g.io.In)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	return data, nil
}

// SnapshotFormat names the snapshot files sovra writes.
const SnapshotFormat = "sovra-state"

// SnapshotSummary is what a snapshot holds, as `sovra snapshot inspect`
// (and save and restore, in JSON and YAML) shows it.
type SnapshotSummary struct {
	File    string `json:"file"`
	Bytes   int    `json:"bytes"`
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Index is the raft index of the last command the state holds.
	Index       uint64 `json:"index"`
	Nodes       int    `json:"nodes"`
	Deployments int    `json:"deployments"`
	Placements  int    `json:"placements"`
	// Models counts the registered models (beyond the built-in catalog).
	Models  int `json:"models"`
	APIKeys int `json:"api_keys"`
	Quotas  int `json:"quotas"`
	// AuditEntries are those kept; AuditTrimmed those trimmed before them.
	AuditEntries    int      `json:"audit_entries"`
	AuditTrimmed    uint64   `json:"audit_trimmed"`
	UsageRows       int      `json:"usage_rows"`
	IdempotencyKeys int      `json:"idempotency_keys"`
	ClusterCA       bool     `json:"cluster_ca"`
	NodeIDs         []string `json:"node_ids"`
	DeploymentNames []string `json:"deployment_names"`
}

// summarize checks a snapshot as a node would before restoring it and
// counts what it holds.
func summarize(data []byte, file string) (*SnapshotSummary, error) {
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%s is not a sovra snapshot: %v", file, err)
	}
	s, err := state.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s is not a snapshot this sovra can restore (format version %d): %v", file, head.Version, err)
	}
	sum := &SnapshotSummary{File: file, Bytes: len(data), Format: SnapshotFormat, Version: head.Version, Index: s.Index,
		Nodes: len(s.Nodes), Deployments: len(s.Deployments), Placements: len(s.Placements), Models: len(s.Models),
		APIKeys: len(s.APIKeys), Quotas: len(s.Quotas), AuditEntries: len(s.Audit), AuditTrimmed: s.AuditAnchor.Seq,
		UsageRows: len(s.Usage), IdempotencyKeys: len(s.Idem), ClusterCA: s.ClusterCA != nil,
		NodeIDs: []string{}, DeploymentNames: []string{}}
	for _, n := range s.NodeList() {
		sum.NodeIDs = append(sum.NodeIDs, n.ID)
	}
	for _, d := range s.DeploymentList() {
		sum.DeploymentNames = append(sum.DeploymentNames, d.Name)
	}
	return sum, nil
}

func (s *SnapshotSummary) details() keyValues {
	var kv keyValues
	kv.add("file", s.File)
	kv.add("size", bytesText(uint64(s.Bytes)))
	kv.add("format", fmt.Sprintf("%s version %d", s.Format, s.Version))
	kv.add("raft index", fmt.Sprint(s.Index))
	kv.add("nodes", countOf(s.Nodes, s.NodeIDs))
	kv.add("deployments", countOf(s.Deployments, s.DeploymentNames))
	kv.add("placements", fmt.Sprint(s.Placements))
	kv.add("registered models", fmt.Sprint(s.Models))
	kv.add("api keys", fmt.Sprint(s.APIKeys))
	kv.add("quotas", fmt.Sprint(s.Quotas))
	kv.add("audit entries", fmt.Sprint(s.AuditEntries)+mark(s.AuditTrimmed > 0, fmt.Sprintf(" (after %d trimmed)", s.AuditTrimmed)))
	kv.add("usage rows", fmt.Sprint(s.UsageRows))
	kv.add("idempotency keys", fmt.Sprint(s.IdempotencyKeys))
	kv.add("cluster ca", yesNo(s.ClusterCA)+mark(s.ClusterCA, " (with its private key: keep the file secret)"))
	return kv
}

func countOf(n int, names []string) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n, joinNames(names))
}

func joinNames(names []string) string {
	const most = 10
	if len(names) > most {
		return fmt.Sprintf("%s, ... %d more", joinNames(names[:most]), len(names)-most)
	}
	return strings.Join(names, ", ")
}

// readSummary reads a snapshot file and checks it as a node would.
func (g *globals) readSummary(file string) ([]byte, *SnapshotSummary, error) {
	data, err := g.readSnapshot(file)
	if err != nil {
		return nil, nil, err
	}
	sum, err := summarize(data, file)
	return data, sum, err
}
