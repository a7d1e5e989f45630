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
//
// faults are the process's minor page faults while the side ran: the
// memory it touched that was not mapped yet, which the Go runtime gives
// back to the system between runs and DuckDB's allocator keeps. Where the
// first touch of a page is dear (a virtual machine whose memory its host
// backs on demand), they weigh on the wall clock and the CPU time alike.
type rate struct {
	wall, cpu float64
	faults    int64
}

// best is the better of two runs: the most rows a second of either clock,
// the fewest faults. The zero rate is no run.
func (r rate) best(o rate) rate {
	if r == (rate{}) {
		return o
	}
	return rate{max(r.wall, o.wall), max(r.cpu, o.cpu), min(r.faults, o.faults)}
}

// timed runs f, which returns the rows it read, after a collection, so that
// garbage left by the last side is not counted against this one.
func timed(f func() (int64, error)) (int64, rate, error) {
	runtime.GC()
	cpu0, faults0 := usage()
	t0 := time.Now()
	rows, err := f()
	wall := time.Since(t0)
	cpu1, faults1 := usage()
	if err != nil {
		return 0, rate{}, err
	}
	return rows, rate{float64(rows) / wall.Seconds(), float64(rows) / max(cpu1-cpu0, time.Microsecond).Seconds(), faults1 - faults0}, nil
}

// usage is the process's CPU time so far and its minor page faults.
func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), int64(ru.Minflt)
}
