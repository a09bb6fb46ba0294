package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/internal/tinymodel"
	"github.com/sovra/sovra/node"
)

// TestPeerModelCopyOnRealOllama runs two nodes over real Ollamas with no
// upstream registry allowed: a tiny model created on a's Ollama only is
// placed on b, whose Ollama pulls it from a through b's relay and a's
// registry on the peer channel. First a blob of it is corrupted on a: b's
// Ollama refuses it (digest check) and the replica says why; once the blob
// is whole again the copy succeeds, b serves the model under its own name
// and no relay name is left on b's Ollama.
func TestPeerModelCopyOnRealOllama(t *testing.T) {
	ollamarig.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rigs := map[string]*ollamarig.Rig{}
	nodes := startNodes(t, []string{"a", "b"}, func(string) string { return "" }, func(id string) string {
		rigs[id] = ollamarig.Start(t, ollamarig.Options{NumParallel: 1})
		if id == "a" {
			if err := rigs[id].CreateTiny(ctx, "tiny"); err != nil {
				t.Fatal(err)
			}
		}
		return rigs[id].URL
	}, func(c *node.Config) {
		c.OllamaModels = rigs[c.NodeID].ModelsDir
		c.ModelUpstream = false
	})
	cl := client.New(nodes["a"].URL(), client.WithToken(testnode.Token), client.WithTimeout(10*time.Second))
	// The registry answers peers only: not even the management token.
	resp, err := testauth.Client.Get(nodes["a"].URL() + "/internal/v1/registry/v2/library/tiny/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the registry answered a client that is not a peer: %d", resp.StatusCode)
	}

	blob := largestBlob(t, rigs["a"].ModelsDir)
	whole, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	broken := slices.Clone(whole)
	broken[len(broken)/2] ^= 0xff
	if err := os.WriteFile(blob, broken, 0o644); err != nil {
		t.Fatal(err)
	}

	two := 1
	if _, err := cl.CreateDeployment(ctx, client.DeploymentRequest{Name: "tiny", Model: "tiny", Replicas: &two, Constraints: []string{"zone=b"}}); err != nil {
		t.Fatal(err)
	}
	var d *client.Deployment
	testwait.Until(t, 90*time.Second, func() bool {
		d, err = cl.Deployment(ctx, "tiny")
		return err == nil && len(d.Placements) == 1 && d.Placements[0].State == client.PlacementFailed &&
			strings.Contains(d.Placements[0].Reason, "digest")
	}, func() string { return "the corrupted copy to be refused with a digest error; last " + describe(d, err) })
	t.Logf("corrupted blob refused: %s", d.Placements[0].Reason)

	if err := os.WriteFile(blob, whole, 0o644); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 120*time.Second, func() bool {
		d, err = cl.Deployment(ctx, "tiny")
		return err == nil && d.ReadyReplicas == 1 && d.Placements[0].Node == "b"
	}, func() string { return "the replica on b to be ready once the blob is whole; last " + describe(d, err) })

	if names := rigs["b"].ModelNames(t); !slices.Equal(names, []string{"tiny:latest"}) {
		t.Fatalf("b's Ollama lists %q, want only tiny:latest (no relay name left)", names)
	}
	if _, err := os.Stat(filepath.Join(rigs["b"].ModelsDir, "blobs", "sha256-"+strings.TrimPrefix(filepath.Base(blob), "sha256-"))); err != nil {
		t.Fatalf("the copied blob is not on b: %v", err)
	}
	if err := chat(ctx, nodes["b"].URL()); err != nil {
		t.Fatalf("chat with the copied model: %v", err)
	}
}

// largestBlob is the biggest blob of an Ollama models directory: a tiny
// model's weights.
func largestBlob(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var best string
	var size int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Size() > size && strings.HasPrefix(e.Name(), "sha256-") {
			best, size = filepath.Join(dir, "blobs", e.Name()), info.Size()
		}
	}
	if best == "" {
		t.Fatal("no blob")
	}
	return best
}

func describe(d *client.Deployment, err error) string {
	if err != nil {
		return err.Error()
	}
	if d == nil {
		return "nothing"
	}
	return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmtDeployment(d), "\n", " "), "  ", " "))
}

func fmtDeployment(d *client.Deployment) string {
	s := d.Name + " " + d.Status + " " + d.Reason
	for _, p := range d.Placements {
		s += " [" + p.Node + " " + p.State + " " + p.Reason + "]"
	}
	return s
}

// TestJoiningNodeCopiesItsReplicaOnRealOllama starts a node whose Ollama
// holds a model, deploys two replicas of it (one can be placed), then
// joins a node whose Ollama has nothing and no upstream registry: its
// replica comes by peer copy (bounded to 3 MB/s so that it lasts a few
// seconds), and the deployment shows the pull's progress meanwhile.
func TestJoiningNodeCopiesItsReplicaOnRealOllama(t *testing.T) {
	ollamarig.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rigs := map[string]*ollamarig.Rig{"a": ollamarig.Start(t, ollamarig.Options{NumParallel: 1}), "b": ollamarig.Start(t, ollamarig.Options{NumParallel: 1})}
	if err := rigs["a"].CreateTinyWith(ctx, "tiny", ollamarig.CreateOptions{Model: tinymodel.Options{Width: 128, Layers: 16}}); err != nil {
		t.Fatal(err)
	}
	share := func(c *node.Config) {
		c.OllamaModels = rigs[c.NodeID].ModelsDir
		c.ModelUpstream = false
		c.ModelCopyRate = 3 << 20
	}
	a := startNodes(t, []string{"a"}, func(string) string { return "" }, func(string) string { return rigs["a"].URL }, share)["a"]
	cl := client.New(a.URL(), client.WithToken(testnode.Token), client.WithTimeout(10*time.Second))
	two := 2
	if _, err := cl.CreateDeployment(ctx, client.DeploymentRequest{Name: "tiny", Model: "tiny", Replicas: &two, SpreadBy: "zone"}); err != nil {
		t.Fatal(err)
	}
	var d *client.Deployment
	var err error
	testwait.Until(t, 60*time.Second, func() bool {
		d, err = cl.Deployment(ctx, "tiny")
		return err == nil && d.ReadyReplicas == 1
	}, func() string { return "a's replica ready; last " + describe(d, err) })

	testnode.Start(t, rigs["b"].URL, placed("b", "1xA100:80GiB", "zone=b", a.Addr()), share)
	labelNodes(t, a.URL(), "b")
	var progress []string
	testwait.Until(t, 90*time.Second, func() bool {
		d, err = cl.Deployment(client.Stale(ctx), "tiny")
		if err != nil {
			return false
		}
		for _, p := range d.Placements {
			if p.Node == "b" && p.State == client.PlacementPulling && p.ProgressPercent != nil && p.BytesTotal > 0 {
				if s := fmt.Sprintf("%.0f%% %d/%d", *p.ProgressPercent, p.BytesDone, p.BytesTotal); !slices.Contains(progress, s) {
					progress = append(progress, s)
				}
			}
		}
		return d.ReadyReplicas == 2
	}, func() string { return "both replicas ready; last " + describe(d, err) })
	t.Logf("progress of b's copy as the deployment showed it: %q", progress)
	if len(progress) == 0 {
		t.Fatal("the deployment never showed the copy's progress")
	}
	if names := rigs["b"].ModelNames(t); !slices.Equal(names, []string{"tiny:latest"}) {
		t.Fatalf("b's Ollama lists %q", names)
	}
}
