package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// CreateDeployment creates a deployment; one of the name exists already:
// ErrConflict.
func (c *Client) CreateDeployment(ctx context.Context, req DeploymentRequest) (*Deployment, error) {
	var d Deployment
	return &d, c.do(ctx, call{method: http.MethodPost, path: "/deployments", body: req, idempotent: true}, &d)
}

// Deployments lists the deployments.
func (c *Client) Deployments(ctx context.Context) ([]Deployment, error) {
	var out struct {
		Deployments []Deployment `json:"deployments"`
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/deployments"}, &out)
	return out.Deployments, err
}

// Deployment returns one deployment with its placements.
func (c *Client) Deployment(ctx context.Context, name string) (*Deployment, error) {
	var d Deployment
	return &d, c.do(ctx, call{method: http.MethodGet, path: "/deployments/" + url.PathEscape(name)}, &d)
}

// ScaleDeployment sets a deployment's replica count.
func (c *Client) ScaleDeployment(ctx context.Context, name string, replicas int) (*Deployment, error) {
	var d Deployment
	return &d, c.do(ctx, call{method: http.MethodPost, path: "/deployments/" + url.PathEscape(name) + "/scale",
		body: map[string]int{"replicas": replicas}, idempotent: true}, &d)
}

// DeleteDeployment deletes a deployment.
func (c *Client) DeleteDeployment(ctx context.Context, name string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: "/deployments/" + url.PathEscape(name), idempotent: true},
		new(struct {
			Deleted string `json:"deleted"`
		}))
}

// Explain says what the scheduler makes of every node for a deployment.
func (c *Client) Explain(ctx context.Context, name string) (*Explanation, error) {
	var e Explanation
	return &e, c.do(ctx, call{method: http.MethodGet, path: "/deployments/" + url.PathEscape(name) + "/explain"}, &e)
}

// ExplainText is Explain rendered for a terminal.
func (c *Client) ExplainText(ctx context.Context, name string) (string, error) {
	b, err := c.send(ctx, call{method: http.MethodGet, path: "/deployments/" + url.PathEscape(name) + "/explain",
		query: url.Values{"format": {"text"}}})
	return string(b), err
}

// Catalog lists the models the scheduler can size: built in and
// registered.
func (c *Client) Catalog(ctx context.Context) ([]CatalogEntry, error) {
	var out struct {
		Models []CatalogEntry `json:"models"`
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/catalog"}, &out)
	return out.Models, err
}

// CatalogEntry returns one model of the catalog.
func (c *Client) CatalogEntry(ctx context.Context, name string) (*CatalogEntry, error) {
	var e CatalogEntry
	return &e, c.do(ctx, call{method: http.MethodGet, path: "/catalog/" + modelPath(name)}, &e)
}

// RegisterModel registers a model's figures; replace allows changing
// those of a registered one (without it: ErrConflict).
func (c *Client) RegisterModel(ctx context.Context, spec ModelSpec, replace bool) (*CatalogEntry, error) {
	var e CatalogEntry
	return &e, c.do(ctx, call{method: http.MethodPost, path: "/catalog",
		body: modelRequest{ModelSpec: spec, Replace: replace}, idempotent: true}, &e)
}

// UnregisterModel removes a registered model.
func (c *Client) UnregisterModel(ctx context.Context, name string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: "/catalog/" + modelPath(name), idempotent: true},
		new(struct {
			Deleted string `json:"deleted"`
		}))
}

// modelPath escapes a model name for the path, keeping its slashes
// ("acme/coder:7b").
func modelPath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
