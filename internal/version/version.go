// Package version holds the version of this build of sovra, set at link
// time with -ldflags "-X github.com/sovra/sovra/internal/version.Version=...".
package version

// Version is the sovra release this binary was built from.
var Version = "0.1.0-dev"
