package main

import (
	"github.com/spf13/pflag"

	"github.com/sovra/sovra/node"
)

// registerLimits adds the flags that bound what a client may make a node
// hold before it is authenticated (README, "Limits").
func (s *settings) registerLimits(fs *pflag.FlagSet, def node.Config) {
	l := &s.node.Limits
	fs.IntVar(&l.MaxHeaderBytes, "max-header-bytes", def.Limits.MaxHeaderBytes, "largest request line and headers together, in bytes (431 past it)")
	fs.IntVar(&l.MaxConns, "max-conns", def.Limits.MaxConns, "connections open at once (503 past it; 0: no cap)")
	fs.IntVar(&l.MaxConnsPerIP, "max-conns-per-ip", def.Limits.MaxConnsPerIP, "connections open at once from one client address, an IPv6 client's /64 (429 past it; 0: no cap)")
	fs.IntVar(&l.MaxMessages, "max-messages", def.Limits.MaxMessages, "items of a request's messages or input array (400 past it)")
	fs.IntVar(&l.MaxJSONDepth, "max-json-depth", def.Limits.MaxJSONDepth, "nesting depth of a JSON request body (400 past it)")
	fs.IntVar(&l.MaxJSONValues, "max-json-values", def.Limits.MaxJSONValues, "values in a JSON request body: objects, arrays, strings, numbers (400 past it)")
}
