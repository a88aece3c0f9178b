//go:build tools

// Pins CoreDNS, so `go mod tidy` keeps it.
package corednsbuild

import (
	_ "github.com/coredns/coredns"
)
