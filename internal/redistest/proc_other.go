//go:build !linux

package redistest

import "syscall"

// sysProcAttr has nothing to add outside Linux: the cleanups stop servers.
func sysProcAttr() *syscall.SysProcAttr { return nil }
