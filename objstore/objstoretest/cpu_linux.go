//go:build linux

package objstoretest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// processCPU is the processor time, user and system, that process pid has
// used, from /proc/<pid>/stat, whose clock ticks are USER_HZ: 100 a second
// on every Linux architecture Go supports.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, the second field, is in parentheses and may hold
	// spaces: the fields are counted from after it, the state (the third)
	// first, so utime and stime (the 14th and 15th) are the 12th and 13th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	user, err := strconv.ParseInt(string(f[11]), 10, 64)
	if err != nil {
		return 0, false
	}
	sys, err := strconv.ParseInt(string(f[12]), 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(user+sys) * (time.Second / 100), true
}
