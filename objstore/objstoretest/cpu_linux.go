//go:build linux

package objstoretest

import (
	"time"

	"github.com/prometheus/procfs"
)

// processCPU is the processor time, user and system, that process pid has
// used, from /proc.
func processCPU(pid int) (time.Duration, bool) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil {
		return 0, false
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), true
}
