//go:build tools

// Pins runc, so `go mod tidy` keeps it.
package runcbuild

import (
	_ "github.com/opencontainers/runc"
)
