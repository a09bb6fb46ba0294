//go:build !sovra_next

package api

import "github.com/gofiber/fiber/v2"

// nextRoutes are the test routes of a build that plays the next version
// (build tag sovra_next, next_on.go); none here.
func nextRoutes(fiber.Router, Cluster) {}
