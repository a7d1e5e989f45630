package pipeline

import (
	"slices"
	"time"
)

// TimeFilter is how a run with a date range reads an object whose path
// names no day: only the rows whose event time falls in Read are delivered
// (jobs marks the others skipped), and the row groups in Pruned, whose
// statistics show no row of them can, are not units at all. The plan keeps
// the filter with the object, so that a resume reads exactly what the plan
// it resumes read, and so that a later run of a recurring job can tell
// what the object has delivered already (Done and Read), whatever range it
// is given.
type TimeFilter struct {
	// Read are the instants this plan of the object delivers rows of.
	Read []Span `json:"read"`
	// Done are the instants earlier plans of the object read (and
	// finished): a run reads none of them again.
	Done []Span `json:"done,omitempty"`
	// Pruned are the row groups left out of the plan: their event times,
	// from the footer's statistics, all lie outside Read.
	Pruned []int `json:"pruned_row_groups,omitempty"`
}

// Span is the instants from From (inclusive) to To (exclusive). A zero
// From is open (the beginning of time); To is never open.
type Span struct {
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to"`
}

// Reads reports whether an event at t (microseconds since the Unix epoch)
// is one f delivers.
func (f *TimeFilter) Reads(micros int64) bool {
	return f == nil || inSpans(f.Read, micros)
}

// Overlaps reports whether some instant of [lo, hi] (microseconds, both
// inclusive) is one f delivers: whether a row group whose event times lie
// there can hold a row to read.
func (f *TimeFilter) Overlaps(lo, hi int64) bool {
	if f == nil {
		return true
	}
	for _, s := range f.Read {
		if (s.From.IsZero() || hi >= s.From.UnixMicro()) && lo < s.To.UnixMicro() {
			return true
		}
	}
	return false
}

// pruned reports whether row group rg is left out of the plan.
func (f *TimeFilter) pruned(rg int) bool {
	return f != nil && slices.Contains(f.Pruned, rg)
}

// Equal reports whether f and g read the same rows of the same row groups.
func (f *TimeFilter) Equal(g *TimeFilter) bool {
	if f == nil || g == nil {
		return f == g
	}
	return spansEqual(f.Read, g.Read) && spansEqual(f.Done, g.Done) && slices.Equal(f.Pruned, g.Pruned)
}

// Clone returns a copy of f that shares nothing with it.
func (f *TimeFilter) Clone() *TimeFilter {
	if f == nil {
		return nil
	}
	return &TimeFilter{Read: slices.Clone(f.Read), Done: slices.Clone(f.Done), Pruned: slices.Clone(f.Pruned)}
}

func inSpans(spans []Span, micros int64) bool {
	for _, s := range spans {
		if (s.From.IsZero() || micros >= s.From.UnixMicro()) && micros < s.To.UnixMicro() {
			return true
		}
	}
	return false
}

func spansEqual(a, b []Span) bool {
	return slices.EqualFunc(a, b, func(x, y Span) bool { return x.From.Equal(y.From) && x.To.Equal(y.To) })
}

// UnionSpans returns the instants of a and b together as sorted spans that
// neither overlap nor touch.
func UnionSpans(a, b []Span) []Span {
	all := append(slices.Clone(a), b...)
	all = slices.DeleteFunc(all, func(s Span) bool { return !s.From.IsZero() && !s.From.Before(s.To) })
	slices.SortFunc(all, func(x, y Span) int { return x.From.Compare(y.From) })
	var out []Span
	for _, s := range all {
		if n := len(out); n > 0 && !s.From.After(out[n-1].To) {
			if s.To.After(out[n-1].To) {
				out[n-1].To = s.To
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// SubtractSpans returns the instants of w that are in none of done, as
// sorted spans.
func SubtractSpans(w Span, done []Span) []Span {
	cur := UnionSpans(nil, []Span{w}) // none when w is empty
	for _, d := range UnionSpans(nil, done) {
		var next []Span
		for _, s := range cur {
			// The part of s before d.
			if !d.From.IsZero() && (s.From.IsZero() || s.From.Before(d.From)) {
				next = append(next, Span{From: s.From, To: minTime(s.To, d.From)})
			}
			// The part of s after d.
			if s.To.After(d.To) {
				from := d.To
				if !s.From.IsZero() && s.From.After(from) {
					from = s.From
				}
				next = append(next, Span{From: from, To: s.To})
			}
		}
		cur = slices.DeleteFunc(next, func(s Span) bool { return !s.From.IsZero() && !s.From.Before(s.To) })
	}
	return cur
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
