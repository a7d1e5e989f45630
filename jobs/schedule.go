package jobs

import (
	"time"

	"github.com/convertro-etl/convertro-etl/pipeline"
)

// listing is the range of days a run lists, and which of the listed objects
// it plans. A run of a recurring job (a state whose ledger holds the same
// job) lists further back than its --from, by --lookback, for objects that
// landed after the run that covered their day; and as far back as the days
// of the ledger's unfinished objects, so that an earlier run's unfinished work
// is resumed whatever range this run was given. pipeline then plans only
// what the ledger has not delivered (pipeline.mergeListing).
type listing struct {
	from, to time.Time // listed days, inclusive; zero = open
	// keep reports whether a listed object (its partition day, "" when its
	// path has none, and its URI) belongs to this run; nil keeps all.
	keep func(day, uri string) bool
	// covered is the first day this run asks for, as the ledger records it
	// (pipeline.Config.CoveredFrom): "0001-01-01" when the range is open.
	covered string
	// rowsFrom is the first day whose events the rows of an object without
	// a day are read for: --from, or as far back as a recurring run looks.
	// rows is the instants they are read for (see rowWindow); nil when the
	// run has no date range, and such objects are read whole.
	rowsFrom time.Time
	rows     *pipeline.Span
}

// rowWindow sets l.rows for a run over [from, to] (inclusive days, zero
// open) that starts at now: from l.rowsFrom to the end of the --to day, but
// never past now. An export without days may still be filling the day the
// run starts on: what the run reads of it is then exactly what was there,
// and a later run reads the rest. Without --from and --to nothing is
// filtered.
func (l *listing) rowWindow(from, to, now time.Time) {
	if from.IsZero() && to.IsZero() {
		return
	}
	end := now.UTC()
	if !to.IsZero() && to.AddDate(0, 0, 1).Before(end) {
		end = to.AddDate(0, 0, 1)
	}
	l.rows = &pipeline.Span{From: l.rowsFrom, To: end}
}

const openDay = "0001-01-01"

// plainListing lists exactly [from, to].
func plainListing(from, to time.Time) listing {
	l := listing{from: from, to: to, covered: openDay, rowsFrom: from}
	if !from.IsZero() {
		l.covered = day(from)
	}
	return l
}

// recurringListing widens [from, to] for a run whose state holds ledger, a
// manifest of the same job.
func recurringListing(from, to time.Time, lookback time.Duration, ledger *pipeline.Manifest) listing {
	l := plainListing(from, to)
	look := from
	if !from.IsZero() {
		// Back by lookback, whole days, but not before the first day the
		// job ever covered: a first run of --from yesterday sends no older
		// history, and the next night looks back at yesterday.
		look = from.Add(-lookback).Truncate(24 * time.Hour)
		if c := ledger.CoveredFrom; c != "" {
			if t, err := time.Parse(time.DateOnly, c); err == nil && t.After(look) {
				look = t
			}
		}
		if look.After(from) {
			look = from
		}
	}
	unfinished := map[string]bool{}
	seen := make(map[int]bool, len(ledger.Objects))
	for _, u := range ledger.Units {
		if !u.Done && !u.Retired && u.Watermark < u.Rows && !seen[u.Object] {
			seen[u.Object] = true
			o := ledger.Objects[u.Object]
			if o.Skipped != "" {
				continue
			}
			unfinished[o.URI] = true
			if o.Day == "" {
				continue
			}
			t, err := time.Parse(time.DateOnly, o.Day)
			if err != nil {
				continue
			}
			if !l.from.IsZero() && t.Before(l.from) {
				l.from = t
			}
			if !l.to.IsZero() && t.After(l.to) {
				l.to = t
			}
		}
	}
	l.from = minDay(l.from, look)
	l.rowsFrom = look
	lookDay, toDay := day(look), day(to)
	l.keep = func(d, uri string) bool {
		if d == "" || unfinished[uri] {
			return true
		}
		return (lookDay == "" || d >= lookDay) && (toDay == "" || d <= toDay)
	}
	return l
}

func minDay(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if b.Before(a) {
		return b
	}
	return a
}
