package jobs

import (
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
)

// SkipOutsideTimeRange is the skip reason of a row of an object whose path
// names no day, in a run with a date range, whose event time falls outside
// what the run reads (the range, less what earlier runs of the job read of
// the object).
const SkipOutsideTimeRange = "outside_time_range"

// A date range selects the objects whose path names a day by that day; an
// object without one (a warehouse export to sharded names, say) is kept
// and its rows are selected by their event time (segment.Message.EventTime)
// instead: a pipeline.TimeFilter per object, which the plan keeps.
//
// undatedFilter decides the filter of such an object for a run that reads
// the instants w, given what the ledger holds of it (prev, nil for none;
// sameVersion when the listing shows the version prev pinned, unfinished
// when prev has rows still to read). reuse says the ledger's plan of the
// object stands as it is, so its row groups need no footer read:
//
//   - an unfinished object is resumed with the filter it was planned with,
//     so that a resume reads what the interrupted run would have; once it
//     is finished, Run plans it again for the instants past it (heldBack);
//   - a finished one, at the same version, is read again for the instants
//     of w that no earlier plan read (none: it stands);
//   - a rewritten one (another version, or set aside before) is read for w
//     less what earlier versions delivered: an export rewritten every night
//     with the whole history then sends each day once. Rows of a day
//     already delivered that only the new version holds are not sent.
//
// heldBack reports an unfinished object resumed with its earlier filter
// while w holds instants past it: Run reads them in a second pass.
func undatedFilter(w pipeline.Span, prev *pipeline.PlannedObject, sameVersion, unfinished bool) (f *pipeline.TimeFilter, reuse, heldBack bool) {
	if prev == nil {
		return &pipeline.TimeFilter{Read: pipeline.SubtractSpans(w, nil)}, false, false
	}
	pf := prev.Filter
	finished := !unfinished && prev.Skipped == ""
	if sameVersion && prev.Skipped == "" {
		if unfinished {
			more := pf != nil && len(pipeline.SubtractSpans(w, pipeline.UnionSpans(pf.Done, pf.Read))) > 0
			return pf.Clone(), true, more
		}
		if pf == nil {
			return nil, true, false // read whole by an earlier run: nothing is new
		}
	}
	var done []pipeline.Span
	if pf != nil {
		done = pf.Done
		if finished {
			done = pipeline.UnionSpans(done, pf.Read)
		} else {
			done = pipeline.UnionSpans(done, nil)
		}
	}
	read := pipeline.SubtractSpans(w, done)
	if sameVersion && prev.Skipped == "" && len(read) == 0 {
		return pf.Clone(), true, false
	}
	return &pipeline.TimeFilter{Read: read, Done: done}, false, false
}

// pruneRowGroups sets f.Pruned: the row groups of pf whose statistics put
// every event time outside f.Read. A row group whose statistics do not
// tell (none written, text or INT96 timestamps, rows that may have no
// event time) is read, and its rows filtered one by one.
func pruneRowGroups(f *pipeline.TimeFilter, pf *readers.ParquetFile) {
	if f == nil {
		return
	}
	f.Pruned = nil
	for i := range pf.RowGroups() {
		if lo, hi, ok := pf.EventTimeBounds(i); ok && !f.Overlaps(lo, hi) {
			f.Pruned = append(f.Pruned, i)
		}
	}
}

// filterRows marks in skip the rows of batch that f does not read. Rows
// without an event time are left to the mapping, which skips them as
// missing_timestamp (or an earlier rule's reason): they fall on no day, and
// are counted in every run that reads their row group.
func filterRows(f *pipeline.TimeFilter, batch []segment.Message, skip []string) {
	for i := range batch {
		if skip[i] != "" {
			continue
		}
		if t, ok := batch[i].EventTime(); ok && !f.Reads(t.Micros) {
			skip[i] = SkipOutsideTimeRange
		}
	}
}
