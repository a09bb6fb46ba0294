// Package client is the admin API's Go client: the exported wire types of
// /admin/v1 and a typed method for every admin route. Errors the API
// answers with come back as *Error, which errors.Is matches against the
// sentinels (ErrNotFound, ErrConflict, ErrNoLeader, ...).
//
// It imports the standard library only, so the CLI, the benchmark, the
// tests and outside programs can use it without the server's packages.
//
//	c := client.New("https://node-1:8080", client.WithToken(token))
//	d, err := c.CreateDeployment(ctx, client.DeploymentRequest{Name: "chat", Model: "qwen2.5:7b"})
//	if errors.Is(err, client.ErrConflict) { ... }
package client
