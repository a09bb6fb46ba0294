package node

import (
	"errors"

	"github.com/sovra/sovra/node/api"
)

// LimitsConfig bounds what a client may make a node hold before it is
// authenticated (see api.Config for each).
type LimitsConfig struct {
	MaxHeaderBytes int
	MaxConns       int
	MaxConnsPerIP  int
	MaxMessages    int
	MaxJSONDepth   int
	MaxJSONValues  int
}

func defaultLimitsConfig() LimitsConfig {
	d := api.DefaultConfig()
	return LimitsConfig{MaxHeaderBytes: d.MaxHeaderBytes, MaxConns: d.MaxConns, MaxConnsPerIP: d.MaxConnsPerIP,
		MaxMessages: d.MaxMessages, MaxJSONDepth: d.MaxJSONDepth, MaxJSONValues: d.MaxJSONValues}
}

func (c LimitsConfig) validate() error {
	switch {
	case c.MaxHeaderBytes < 4096:
		return errors.New("max header bytes must be at least 4096")
	case c.MaxConns < 0 || c.MaxConnsPerIP < 0:
		return errors.New("connection caps must not be negative (0: no cap)")
	case c.MaxMessages < 1 || c.MaxJSONDepth < 2 || c.MaxJSONValues < 16:
		return errors.New("max messages must be at least 1, max JSON depth at least 2 and max JSON values at least 16")
	}
	return nil
}

// apply sets the limits on an API configuration.
func (c LimitsConfig) apply(a *api.Config) {
	a.MaxHeaderBytes, a.MaxConns, a.MaxConnsPerIP = c.MaxHeaderBytes, c.MaxConns, c.MaxConnsPerIP
	a.MaxMessages, a.MaxJSONDepth, a.MaxJSONValues = c.MaxMessages, c.MaxJSONDepth, c.MaxJSONValues
}
