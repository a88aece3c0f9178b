//go:build tools

// Pins the server commands this module builds, so `go mod tidy` keeps them:
// the apiserver and kubectl (envtest-style tests), and the rest of a node
// for tests/cluster (controller-manager, scheduler, kubelet, kube-proxy).
package testservers

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
