package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/internal/pki"
)

// newTLS is `sovra tls`: helpers for operators who run their own cluster
// CA instead of the one the first node makes. The cryptography is
// internal/pki's.
func newTLS() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make a cluster CA and node certificates for --cluster-ca, --cluster-cert and --cluster-key",
	}
	cmd.AddCommand(newTLSCA(), newTLSCert())
	return cmd
}

func newTLSCA() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "ca --out DIR",
		Short: "Create a cluster CA: DIR/" + pki.CAFile + " and DIR/" + pki.CAKeyFile + " (keep the key offline)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeCA(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the CA into (created if needed)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newTLSCert() *cobra.Command {
	var caDir, nodeID, out string
	var hosts []string
	cmd := &cobra.Command{
		Use:   "cert --ca DIR --node-id ID --out DIR [--host NAME,...]",
		Short: "Issue a node certificate signed by the CA in --ca: DIR/" + pki.CertFile + ", DIR/" + pki.CertKeyFile + " and a copy of " + pki.CAFile,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeNodeCert(cmd.OutOrStdout(), caDir, nodeID, out, hosts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&caDir, "ca", "", "directory of the CA made by `sovra tls ca`")
	fs.StringVar(&nodeID, "node-id", "", "id of the node the certificate is for (its --node-id)")
	fs.StringVar(&out, "out", "", "directory to write the node's files into (created if needed)")
	fs.StringSliceVar(&hosts, "host", nil, "DNS names or IP addresses of the node, added to the certificate")
	for _, f := range []string{"ca", "node-id", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// writeCA creates a CA in dir.
func writeCA(w io.Writer, dir string) error {
	ca, err := pki.NewCA("sovra cluster CA")
	if err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeNew(dir, map[string][]byte{pki.CAFile: ca.CertPEM(), pki.CAKeyFile: keyPEM}); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s and %s (fingerprint %s)\nissue node certificates with: sovra tls cert --ca %s --node-id ID --out DIR\n",
		filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.CAKeyFile), pki.Fingerprint(ca.Cert.Raw), dir)
	return nil
}

// writeNodeCert issues a certificate for nodeID with the CA in caDir and
// writes it, its key and the CA certificate to dir.
func writeNodeCert(w io.Writer, caDir, nodeID, dir string, hosts []string) error {
	ca, err := readCA(caDir)
	if err != nil {
		return err
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	certPEM, err := ca.Issue(nodeID, key.Public(), hosts)
	if err != nil {
		return usageError{err}
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	if _, err := pki.FromPEM(nodeID, ca.CertPEM(), certPEM, keyPEM); err != nil {
		return err
	}
	if err := writeNew(dir, map[string][]byte{pki.CAFile: ca.CertPEM(), pki.CertFile: certPEM, pki.CertKeyFile: keyPEM}); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote the certificate of node %s; run it with:\n  --cluster-ca %s --cluster-cert %s --cluster-key %s\n", nodeID,
		filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.CertFile), filepath.Join(dir, pki.CertKeyFile))
	return nil
}

// readCA loads the CA that `sovra tls ca` wrote in dir.
func readCA(dir string) (*pki.CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		return nil, usageError{fmt.Errorf("--ca: %w", err)}
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		return nil, usageError{fmt.Errorf("--ca: %w", err)}
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, usageError{fmt.Errorf("--ca: %w", err)}
	}
	return ca, nil
}

// errExists is a file the tls commands will not overwrite.
var errExists = errors.New("exists; remove it first or choose another --out")

// writeNew writes files into dir (made 0700 when absent), each readable
// by its owner only; it writes none when any of them exists already.
func writeNew(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return usageError{fmt.Errorf("%s %w", filepath.Join(dir, name), errExists)}
		}
	}
	for name, data := range files {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err = errors.Join(err, f.Close()); err != nil {
			return err
		}
	}
	return nil
}
