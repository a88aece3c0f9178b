//go:build tools

// Pins the containerd commands this module builds, so `go mod tidy` keeps them.
package containerdserver

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
