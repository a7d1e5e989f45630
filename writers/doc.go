// Package writers owns what the job writes besides Convertro requests: the
// dead-letter files (Parquet, one row per request Convertro refused for good)
// and, in the generate subpackage, the synthetic exports used by the demo,
// the tests and the benchmarks. It decides nothing about what is sent.
//
// # Errors
//
// Encoding and decoding errors are returned wrapped with the operation
// ("encode dead letters: …", "read dead letters <name>: …"); writers defines
// no error kinds of its own.
//
// # Concurrency
//
// The functions keep no state and are safe to call concurrently on
// different values.
package writers
