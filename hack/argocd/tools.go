//go:build tools

// Package argocd pins Argo CD's multi-call binary (repo-server, application-controller, ...)
// so that `go mod tidy` keeps it; build.sh builds it from this module.
package argocd

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
