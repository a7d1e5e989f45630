//go:build unix

package main

import (
	"runtime"
	"syscall"
	"time"
)

// rate is a side's rows a second of wall time and of CPU time. The CPU
// time is the process's (user and system, every thread, DuckDB's
// included), which only the side measured uses: on a machine other work
// loads, rows per CPU second move less than rows per wall second, and a
// ratio of them says which side does less work for the same rows.
type rate struct{ wall, cpu float64 }

func (r rate) best(o rate) rate { return rate{max(r.wall, o.wall), max(r.cpu, o.cpu)} }

// timed runs f, which returns the rows it read, after a collection, so that
// garbage left by the last side is not counted against this one.
func timed(f func() (int64, error)) (int64, rate, error) {
	runtime.GC()
	cpu0, t0 := cpuTime(), time.Now()
	rows, err := f()
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	if err != nil {
		return 0, rate{}, err
	}
	return rows, rate{float64(rows) / wall.Seconds(), float64(rows) / max(cpu, time.Microsecond).Seconds()}, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
