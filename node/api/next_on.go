//go:build sovra_next

package api

import (
	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/cluster/state"
)

// nextRoutes write the command types of the next version (build tag
// sovra_next, cluster/state/next.go), for the mixed-version tests:
// POST /admin/v1/next/hint writes the ignorable one, POST
// /admin/v1/next/priority {"name","priority"} the one older versions may
// not skip. cl is not audited: an audit record would make the hint need
// every member to know it (state.NeedsLevel).
func nextRoutes(a fiber.Router, cl Cluster) {
	a.Post("/next/hint", func(c *fiber.Ctx) error {
		return applyNext(c, cl, state.Command{Type: state.TypeNextHint, Flags: state.FlagIgnorable, Body: struct{}{}})
	})
	a.Post("/next/priority", func(c *fiber.Ctx) error {
		var body state.NextPriority
		if err := decodeBody(c, &body); err != nil {
			return err
		}
		return applyNext(c, cl, state.Command{Type: state.TypeNextPriority, Body: body})
	})
}

func applyNext(c *fiber.Ctx, cl Cluster, cmd state.Command) error {
	out, err := cl.Apply(c.UserContext(), cmd)
	if err != nil {
		return err
	}
	return c.JSON(out)
}
