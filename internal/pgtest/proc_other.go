//go:build !linux

package pgtest

import "syscall"

// sysProcAttr runs the process with cred (nil: as the current user); the
// cleanups stop servers.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	if cred == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: cred}
}
