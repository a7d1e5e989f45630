// Package simulator is a stand-in for Convertro's tracking API, so that the
// client, retries, rate limits and crash recovery are tested over real HTTP.
// It owns the server side of the wire format only: it imports nothing of
// package convertro, so a wire bug cannot hide on both sides at once.
//
// A Simulator is an http.Handler (mount it in httptest.NewServer, or run
// ListenAndServe, which `convertro-etl simulate` does). GET /_stats answers
// the counters as JSON; every other request is an API request.
//
// # Validation
//
// What the wire design page requires, and nothing more: the path is
// /api/{user|hit|install}/{clientName}/{siteId}/ (client name and site id
// checked only when Options sets them); sid is present on every request; a
// hit has typ, val, eid; an install has eid; a user request has id; ts is an
// integer on every request; val, wherever present, is a finite number;
// sids in Options.RejectSIDs are refused. Parameters given twice count by
// their first value. Anything else is answered 400 (405 for a method other
// than GET) with a text body that starts with one of the Reason constants.
//
// # Misbehaviour
//
// Each API request meets, in order: the MaxRPS ceiling (429, Retry-After: 1;
// not an attempt); Delay; Options.Script; one random draw that picks a drop,
// a 500, a 429 or a slow answer by the configured shares; validation.
//
// The draw is a hash of (Seed, the request's identity — path and raw query —,
// the attempt number of that identity), not a random stream. The same seed
// therefore gives the same request the same sequence of faults in every run,
// however many goroutines send and in whatever order they arrive, and a
// failing test replays exactly. Faults are mutually exclusive and their
// shares add up (Drop+Fail500+Fail429+Slow ≤ 1).
//
// A dropped HTTP/1 connection is closed without an answer; an HTTP/2 stream
// is reset. Go's HTTP/1 client replays a GET once, by itself, when a reused
// keep-alive connection closes without an answer: the simulator then sees an
// attempt the client's own counters do not.
//
// # Recording and duplicates
//
// Each accepted request, and only those, is written to Options.Record as one
// JSON line {"path":…,"query":{name: value},"raw":…} (raw: the query exactly
// as it came, parameter order and escaping included), in acceptance order, through a
// buffer: Flush or Close before reading it in-process; Serve and
// ListenAndServe also flush every second and when they stop. Duplicates counts accepted
// requests that repeat an earlier accepted one: hits and installs by (kind,
// typ, eid), eid being Convertro's event id (so the two hits of a hybrid sale
// are distinct); user requests, which carry no event id, by all their
// parameters but cua and cip (sid, id, ts and any trait), so repeating an
// identify is a duplicate but a new ts or a changed trait is not. The sets
// behind the attempt and duplicate counters keep 8 bytes per distinct
// request, for the simulator's lifetime.
//
// # Errors
//
// ListenAndServe and Serve return the listener's or server's error wrapped
// with the address, joined with a record write error; a shutdown caused by
// ctx is not an error. Record write errors are sticky: the first one is
// returned by Flush, Close and Serve, and recording stops.
//
// # Concurrency
//
// A Simulator serves any number of requests at once; counters, the attempt
// and duplicate sets, and the record are guarded by mutexes, so Stats, Flush
// and Close may be called while it serves. Options.Script and Options.Now are
// called concurrently and must be safe for that. Answers to requests that are
// waiting (Delay, SlowDelay) end when the request's context ends, which for
// ListenAndServe includes its ctx.
package simulator
