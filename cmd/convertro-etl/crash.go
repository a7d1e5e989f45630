package main

import (
	"os"
	"sync"
)

// crashEnv, set only by tests, makes the program crash at start, so that
// they can check how a crash exits: "panic" panics in a goroutine, "fatal"
// hits a fatal runtime error (unlocking an unlocked mutex, which no recover
// can catch, like running out of memory). The crash disables core dumps
// first: a test must not leave one behind.
const crashEnv = "CONVERTRO_ETL_TEST_CRASH"

func crashForTests() {
	how := os.Getenv(crashEnv)
	if how == "" {
		return
	}
	noCoreDumps()
	switch how {
	case "panic":
		// main waits for good: the panicking goroutine ends the process.
		// (A deferred close to wake main would run while the panic unwinds,
		// and main could exit first.)
		go func() { panic("crash requested by " + crashEnv) }()
		select {}
	case "fatal":
		var mu sync.Mutex
		mu.Unlock()
	}
}
