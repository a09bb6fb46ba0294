package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// TestWrongTokenStopsTheNode checks that a node whose cluster token the
// members refuse stops with an error that says what to fix, instead of
// retrying for ever while looking healthy.
func TestWrongTokenStopsTheNode(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	a := testnode.Start(t, sim.URL(), member("a"))
	cfg := node.DefaultConfig()
	member("b", a.Addr())(&cfg)
	cfg.Cluster.Token = "not-the-cluster-token"
	cfg.HTTPAddr, cfg.OllamaURL, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", sim.URL(), t.TempDir(), testnode.Token
	n, err := node.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatal("a node with the wrong token kept running")
	}
	if !errors.Is(err, cluster.ErrBadToken) || !strings.Contains(err.Error(), "--cluster-token") {
		t.Fatalf("Run returned %v; want the refused token and how to fix it", err)
	}
}

// TestReadyOnceJoined checks that /readyz answers 503 until the node is
// a member that knows its leader, while /healthz answers 200; and that a
// node joins through a member's URL.
func TestReadyOnceJoined(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	a := testnode.Start(t, sim.URL(), member("a"))
	testwait.For(t, 20*time.Second, "a ready", func() bool { return readyz(t, a.URL()) == http.StatusOK })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	lost := testnode.Start(t, sim.URL(), member("lost", dead))
	if code := readyz(t, lost.URL()); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz of a node that has not joined: %d", code)
	}
	if code := status(t, lost.URL()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz of a live node: %d", code)
	}

	b := testnode.Start(t, sim.URL(), member("b", "http://"+a.Addr()+"/"))
	testwait.For(t, 20*time.Second, "b, joined by URL, ready", func() bool { return readyz(t, b.URL()) == http.StatusOK })
}

func readyz(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Reason string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK && body.Reason == "" {
		t.Errorf("/readyz answered %d without a reason", resp.StatusCode)
	}
	return resp.StatusCode
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestNoGPUsIsAWarning checks that a node whose discovery finds no GPU
// (no nvidia-smi here) warns that nothing can be placed on it and says how
// to declare its GPUs.
func TestNoGPUsIsAWarning(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no nvidia-smi
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := node.DefaultConfig()
	member("nogpu")(&cfg)
	cfg.HTTPAddr, cfg.OllamaURL, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", sim.URL(), t.TempDir(), testnode.Token
	n, err := node.New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	testwait.For(t, 10*time.Second, "a warning naming --gpu", func() bool {
		return logs.FilterMessageSnippet("deployments cannot be placed").FilterMessageSnippet("--gpu").Len() == 1
	})
}
