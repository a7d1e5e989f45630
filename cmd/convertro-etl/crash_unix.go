//go:build unix

package main

import "syscall"

// noCoreDumps sets the core file size limit to 0.
func noCoreDumps() { _ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}) }
