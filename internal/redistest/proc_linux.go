package redistest

import "syscall"

// sysProcAttr asks the kernel to SIGKILL the server if the test process dies
// without running its cleanups (a panic or a timeout kill), so no
// redis-server outlives its test. Pdeathsig is tied to the OS thread that
// forked; Go test goroutines do not lock threads, so that thread lives as long
// as the process in practice.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
