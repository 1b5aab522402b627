package pgtest

import "syscall"

// sysProcAttr runs the process with cred (nil: as the current user) and asks
// the kernel to SIGKILL it if the test process dies without running its
// cleanups, so no postmaster outlives its test. (Its backends notice the
// postmaster's death and exit.) Go sets the death signal after switching
// credentials, which would otherwise clear it.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
