//go:build tools

// Package kube pins the kube-apiserver and kubectl main packages so that
// `go mod tidy` keeps them; build.sh builds them from this module.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
