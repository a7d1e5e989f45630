//go:build windows

package pipeline

import "golang.org/x/sys/windows"

// processRunning reports whether pid names a running process. A process
// that cannot be opened for another reason than not existing (access
// denied) is taken as running: the lease then waits for its expiry.
func processRunning(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return err != windows.ERROR_INVALID_PARAMETER // no such process
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return true
	}
	const stillActive = 259
	return code == stillActive
}
