//go:build tools

// Pins the server commands this module builds, so `go mod tidy` keeps them.
package testservers

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
