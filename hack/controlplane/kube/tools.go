//go:build tools

// Package kube pins the control plane's main packages (kube-apiserver, kube-scheduler,
// kube-controller-manager, kubectl) so that `go mod tidy` keeps them; build.sh builds
// them from this module.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
