package pipeline

import (
	"log/slog"
	"testing"
	"time"
)

func TestSpans(t *testing.T) {
	d := func(day int) time.Time { return time.Date(2024, 3, day, 0, 0, 0, 0, time.UTC) }
	open := time.Time{}
	cases := []struct {
		name      string
		w         Span
		done      []Span
		wantRead  []Span
		wantUnion []Span // done ∪ w
	}{
		{"nothing done", Span{d(2), d(3)}, nil, []Span{{d(2), d(3)}}, []Span{{d(2), d(3)}}},
		{"the day before done", Span{d(1), d(3)}, []Span{{d(1), d(2)}}, []Span{{d(2), d(3)}}, []Span{{d(1), d(3)}}},
		{"all done", Span{d(2), d(3)}, []Span{{d(1), d(5)}}, nil, []Span{{d(1), d(5)}}},
		{"a hole", Span{d(1), d(6)}, []Span{{d(2), d(3)}, {d(4), d(5)}},
			[]Span{{d(1), d(2)}, {d(3), d(4)}, {d(5), d(6)}}, []Span{{d(1), d(6)}}},
		{"open start", Span{open, d(4)}, []Span{{d(2), d(3)}}, []Span{{open, d(2)}, {d(3), d(4)}}, []Span{{open, d(4)}}},
		{"open done", Span{d(2), d(6)}, []Span{{open, d(4)}}, []Span{{d(4), d(6)}}, []Span{{open, d(6)}}},
		{"disjoint", Span{d(5), d(6)}, []Span{{d(1), d(2)}}, []Span{{d(5), d(6)}}, []Span{{d(1), d(2)}, {d(5), d(6)}}},
		{"empty window", Span{d(5), d(5)}, nil, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := SubtractSpans(c.w, c.done); !spansEqual(got, c.wantRead) {
				t.Errorf("SubtractSpans = %v, want %v", got, c.wantRead)
			}
			if got := UnionSpans(c.done, []Span{c.w}); !spansEqual(got, c.wantUnion) {
				t.Errorf("UnionSpans = %v, want %v", got, c.wantUnion)
			}
		})
	}
	f := &TimeFilter{Read: []Span{{d(2), d(3)}}}
	for _, c := range []struct {
		lo, hi time.Time
		want   bool
	}{
		{d(1), d(2).Add(-time.Microsecond), false},
		{d(1), d(2), true},
		{d(3).Add(-time.Microsecond), d(4), true},
		{d(3), d(4), false},
	} {
		if got := f.Overlaps(c.lo.UnixMicro(), c.hi.UnixMicro()); got != c.want {
			t.Errorf("Overlaps(%s, %s) = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
	if !f.Reads(d(2).UnixMicro()) || f.Reads(d(3).UnixMicro()) || !(*TimeFilter)(nil).Reads(0) {
		t.Error("Reads: the start is in, the end is out, and no filter reads all")
	}
}

// TestMergeListingRefilters: an object of the ledger listed at the same
// version with another time filter is planned again with it once finished
// (its earlier units' rows kept in Pruned.Rows, pruned row groups not
// planned), and left as it is while unfinished.
func TestMergeListingRefilters(t *testing.T) {
	d := func(day int) time.Time { return time.Date(2024, 3, day, 0, 0, 0, 0, time.UTC) }
	old := &TimeFilter{Read: []Span{{d(1), d(2)}}, Pruned: []int{2}}
	next := &TimeFilter{Read: []Span{{d(2), d(3)}}, Done: []Span{{d(1), d(2)}}, Pruned: []int{0}}
	obj := Object{URI: "u", Key: "k", Size: 10, Version: "1", RowGroups: []int64{5, 6, 7}}
	ledger := func(done bool) *Manifest {
		o := obj
		o.Filter = old
		m := newManifest(Config{Shard: Shard{0, 1}, Objects: []Object{o}})
		if len(m.Units) != 2 {
			t.Fatalf("%d units planned, want 2 (row group 2 pruned)", len(m.Units))
		}
		for i := range m.Units {
			if done {
				m.Units[i].Watermark, m.Units[i].Done = m.Units[i].Rows, true
			}
		}
		return m
	}
	listed := obj
	listed.Filter = next

	m := ledger(true)
	if added := mergeListing(m, Config{Shard: Shard{0, 1}, Objects: []Object{listed}}, slog.New(slog.DiscardHandler)); !added {
		t.Fatal("a finished object with a new filter added no units")
	}
	if len(m.Units) != 2 || m.Units[0].RowGroup != 1 || m.Units[1].RowGroup != 2 || m.Units[0].Done {
		t.Errorf("units %+v, want row groups 1 and 2, not done", m.Units)
	}
	if m.Pruned.Rows != 11 || !m.Objects[0].Filter.Equal(next) {
		t.Errorf("pruned rows %d (want 11), filter %+v", m.Pruned.Rows, m.Objects[0].Filter)
	}

	m = ledger(false)
	if added := mergeListing(m, Config{Shard: Shard{0, 1}, Objects: []Object{listed}}, slog.New(slog.DiscardHandler)); added {
		t.Error("an unfinished object was planned again")
	}
	if !m.Objects[0].Filter.Equal(old) || len(m.Units) != 2 {
		t.Errorf("unfinished object changed: filter %+v, units %+v", m.Objects[0].Filter, m.Units)
	}
}
