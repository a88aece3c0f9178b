//go:build tools

// Pins kube-router, so `go mod tidy` keeps it.
package kuberouterbuild

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
