//go:build !linux

package objstoretest

import "time"

// processCPU is not measured where there is no /proc to read it from.
func processCPU(int) (time.Duration, bool) { return 0, false }
