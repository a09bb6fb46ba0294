package modelshare

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
)

// Ollama is what the Puller needs of the local Ollama.
type Ollama interface {
	Pull(ctx context.Context, req *api.PullRequest, fn func(api.ProgressResponse) error) error
	Copy(ctx context.Context, req *api.CopyRequest) error
	Delete(ctx context.Context, req *api.DeleteRequest) error
}

// Peer is a node whose Ollama may hold a model: its id and the base URL
// of its API (scheme://host:port).
type Peer struct {
	ID, URL string
}

// Puller puts models on the local Ollama: copied from a peer that holds
// them when one does, else pulled from Ollama's upstream registry when
// Upstream allows it.
type Puller struct {
	Ollama Ollama
	// Peers lists the peers that may hold a model, the likeliest first.
	Peers func(model string) []Peer
	// Client calls peers: the peer channel's mutual TLS.
	Client *http.Client
	// Upstream allows pulling from Ollama's own registry when no peer
	// has the model (off in an air-gapped site).
	Upstream bool
	// RateLimit bounds the bytes per second of a copy from a peer (0:
	// none), so that copies leave room for serving traffic.
	RateLimit int64
	Logger    *zap.Logger
}

// probeTimeout bounds asking a peer whether it holds a model.
const probeTimeout = 5 * time.Second

// Pull puts the model on the local Ollama, reporting progress to fn.
func (p *Puller) Pull(ctx context.Context, name string, fn func(api.ProgressResponse) error) error {
	var tried []string
	if m, err := parseModel(name); err == nil && p.Peers != nil {
		for _, peer := range p.Peers(name) {
			if !p.holds(ctx, peer, m) {
				continue
			}
			err := p.copyFrom(ctx, peer, m, name, fn)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.Logger.Warn("copying a model from a peer failed", zap.String("model", name), zap.String("peer", peer.ID), zap.Error(err))
			tried = append(tried, "from "+peer.ID+": "+err.Error())
		}
	}
	if !p.Upstream {
		if len(tried) > 0 {
			return fmt.Errorf("%w; %s", ErrNoSource, strings.Join(tried, "; "))
		}
		return ErrNoSource
	}
	err := p.Ollama.Pull(ctx, &api.PullRequest{Model: name}, fn)
	if err != nil && len(tried) > 0 {
		err = fmt.Errorf("%w (after copying failed %s)", err, strings.Join(tried, "; "))
	}
	return err
}

// holds asks a peer whether its Ollama has the model.
func (p *Puller) holds(ctx context.Context, peer Peer, m model) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	url := peer.URL + RoutePrefix + "/v2/" + m.repo() + "/manifests/" + m.tag
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return false
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// copyFrom has the local Ollama pull the model from the peer through a
// relay, under the relay's name, then gives it its own name and drops the
// relay's.
func (p *Puller) copyFrom(ctx context.Context, peer Peer, m model, name string, fn func(api.ProgressResponse) error) error {
	r, err := startRelay(peer.URL, m.repo(), p.Client, p.RateLimit)
	if err != nil {
		return err
	}
	defer r.close()
	src := r.host() + "/" + m.repo() + ":" + m.tag
	p.Logger.Info("copying a model from a peer", zap.String("model", name), zap.String("peer", peer.ID))
	if err := p.Ollama.Pull(ctx, &api.PullRequest{Model: src, Insecure: true}, fn); err != nil {
		return err
	}
	defer func() {
		// The blobs stay: the model's own name holds them.
		if err := p.Ollama.Delete(context.WithoutCancel(ctx), &api.DeleteRequest{Model: src}); err != nil {
			p.Logger.Warn("could not drop the relay's name of a copied model", zap.String("name", src), zap.Error(err))
		}
	}()
	if err := p.Ollama.Copy(ctx, &api.CopyRequest{Source: src, Destination: name}); err != nil {
		return errors.Join(errors.New("name the copied model"), err)
	}
	return nil
}
