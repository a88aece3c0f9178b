//go:build tools

// Pins the helm command so `go mod tidy` keeps it.
package helmtool

import _ "helm.sh/helm/v3/cmd/helm"
