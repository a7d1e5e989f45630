//go:build !unix

package main

// noCoreDumps does nothing: only Unix writes core files.
func noCoreDumps() {}
