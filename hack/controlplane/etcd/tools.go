//go:build tools

// Package etcd pins the etcd server main package (go.etcd.io/etcd/server/v3)
// so that `go mod tidy` keeps it; build.sh builds it from this module.
package etcd

import _ "go.etcd.io/etcd/server/v3"
