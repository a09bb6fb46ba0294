// Package models will own the model catalog, model name resolution and VRAM
// estimation (standard library only). It is empty until the placement work
// lands; it exists now so the package map of the design is in place.
package models
