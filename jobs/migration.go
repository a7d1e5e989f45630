package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
)

// A migration (kind "migration") is a backfill of a long history — years of
// hourly partitions — run over many invocations under a request budget. It
// differs from a backfill in three ways: its plan sends the oldest partition
// first (so that a migration cut short has delivered a contiguous past, and
// status can say how far it got), plan estimates the requests and the days
// the daily cap needs, and it is meant to be run with --max-requests-per-day
// (any backfill may be) and run again each day until status says finished.
var migrationKind = Kind{
	Name:      "migration",
	Order:     oldestFirst,
	PrintPlan: printMigrationPlan,
}

// oldestFirst orders the plan by partition: day, then hour (a day-level
// partition before that day's hours), then key. Objects whose path names no
// day go last. The manifest stores this order, so a resume follows it even if
// a later listing comes back in another order.
func oldestFirst(a, b readers.Object) int {
	pa, pb := a.Partition, b.Partition
	if pa.HasDay != pb.HasDay {
		if pa.HasDay {
			return -1
		}
		return 1
	}
	return cmp.Or(pa.Day.Compare(pb.Day), cmp.Compare(pa.Hour, pb.Hour),
		cmp.Compare(a.Key, b.Key), cmp.Compare(a.URI, b.URI))
}

// sampleUnitsPerTable and sampleRows bound what plan reads to estimate the
// requests of a migration: row groups spread evenly over each table's span
// (its first and last among them), at most sampleRows rows of each.
const (
	sampleUnitsPerTable = 8
	sampleRows          = 5000
)

var errSampleFull = errors.New("sample full")

// requestEstimate is plan's guess at the requests of some units: the requests
// per row of a sample of each table, times the table's rows.
type requestEstimate struct {
	requests      float64
	sampled       int64 // rows read for the sample
	tables        int
	sampledTables int
}

// estimateRequests transforms a sample of units of each table (as a run
// would, sending nothing) and extrapolates to every unit by table.
func estimateRequests(ctx context.Context, p *prepared, units []pipeline.Unit) (requestEstimate, error) {
	var est requestEstimate
	type table struct {
		units          []pipeline.Unit
		rows           int64
		sampleRows     int64
		sampleRequests int64
	}
	byTable := map[string]*table{}
	var order []string
	for _, u := range units {
		name := p.in.refs[u.Object].scope.Table
		t := byTable[name]
		if t == nil {
			t = &table{}
			byTable[name] = t
			order = append(order, name)
		}
		t.units = append(t.units, u)
		t.rows += u.Rows
	}
	tf := newTransform(p.mapper, p.wire)()
	var n int64
	emit := func([]byte) { n++ }
	for _, name := range order {
		t := byTable[name]
		k := min(len(t.units), sampleUnitsPerTable)
		for j := range k {
			u := t.units[0]
			if k > 1 {
				u = t.units[j*(len(t.units)-1)/(k-1)]
			}
			var rows int64
			err := p.in.Decode(ctx, p.in.object(u.Object), u.RowGroup, func(_ int64, batch []segment.Message, skip []string) error {
				for i := range batch {
					if rows == sampleRows {
						return errSampleFull
					}
					rows++
					if skip == nil || skip[i] == "" {
						tf(&batch[i], emit)
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, errSampleFull) {
				return est, err
			}
			t.sampleRows += rows
			t.sampleRequests += n
			n = 0
		}
	}
	var all, allRows int64
	for _, t := range byTable {
		all += t.sampleRequests
		allRows += t.sampleRows
	}
	for _, t := range byTable {
		est.tables++
		if t.sampleRows > 0 {
			est.sampledTables++
			est.requests += float64(t.rows) * float64(t.sampleRequests) / float64(t.sampleRows)
		} else if allRows > 0 {
			est.requests += float64(t.rows) * float64(all) / float64(allRows)
		}
	}
	est.sampled = allRows
	return est, nil
}

// printMigrationPlan adds to plan what a migration's operator needs before
// anything is sent: the partitions' span in send order, and the requests,
// days at the cap and sending time they amount to.
func printMigrationPlan(ctx context.Context, w io.Writer, p *prepared, mine []pipeline.Unit) {
	var first, last readers.Partition
	parts := map[[2]int64]bool{}
	undated := 0
	for i := range p.in.refs {
		if p.in.aside[i] != "" {
			continue
		}
		r := &p.in.refs[i]
		if !r.scope.HasDay {
			undated++
			continue
		}
		pt := r.partition()
		if len(parts) == 0 {
			first = pt
		}
		last = pt // objects are in send order: oldest first
		parts[[2]int64{pt.Day.Unix(), int64(pt.Hour)}] = true
	}
	fmt.Fprintf(w, "\nmigration: partitions are sent oldest first")
	if len(parts) > 0 {
		fmt.Fprintf(w, ", %d partitions from %s to %s (%s)", len(parts), partitionName(first), partitionName(last),
			plural(int64(last.Day.Sub(first.Day).Hours()/24)+1, "day"))
	}
	if undated > 0 {
		fmt.Fprintf(w, "; %d objects without a day partition go last", undated)
	}
	fmt.Fprintln(w)
	est, err := estimateRequests(ctx, p, mine)
	if err != nil || est.sampled == 0 {
		why := "no rows to sample"
		if err != nil {
			why = "the sample could not be read: " + err.Error()
		}
		fmt.Fprintf(w, "requests: unknown until sent (%s)\n", why)
		return
	}
	reqs := int64(math.Round(est.requests))
	fmt.Fprintf(w, "requests: about %d for shard %s (estimated from %d rows sampled in %d of %d tables)\n",
		reqs, p.shard, est.sampled, est.sampledTables, est.tables)
	if c := p.o.MaxRequestsPerDay; c > 0 {
		fmt.Fprintf(w, "daily cap: %d requests per UTC day: about %s (one run a day: each stops at the cap with exit 3 and the next continues)\n",
			c, plural(ceilDiv(reqs, c), "day"))
	}
	if p.o.Rate > 0 {
		fmt.Fprintf(w, "rate: %.0f requests/s: about %s of sending\n", p.o.Rate, roundDuration(time.Duration(float64(reqs)/p.o.Rate*float64(time.Second))))
	}
}

func partitionName(pt readers.Partition) string {
	s := pt.Day.Format(time.DateOnly)
	if pt.Hour >= 0 {
		s += fmt.Sprintf(" %02d:00", pt.Hour)
	}
	return s
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	default:
		return d.Round(100 * time.Millisecond)
	}
}

// ETA is status's estimate for an unfinished shard, from its manifest: the
// rate observed over the active time of its runs, and with a daily cap the
// days of the cap that the requests left need.
type ETA struct {
	RowsLeft      int64   `json:"rows_left"`
	ActiveSeconds float64 `json:"active_seconds"`
	// RowsPerSecond is the rows done over the runs' active time; 0 when
	// nothing is done yet. Seconds is the rows left at that rate: sending
	// time, not counting the waits for the next day's budget.
	RowsPerSecond float64 `json:"rows_per_second,omitempty"`
	Seconds       float64 `json:"seconds,omitempty"`
	// RequestsPerRow is the requests sent per row read so far, and
	// RequestsLeft the rows left times it.
	RequestsPerRow float64 `json:"requests_per_row,omitempty"`
	RequestsLeft   int64   `json:"requests_left,omitempty"`
	// With a daily cap (the last run's): the requests counted today (UTC)
	// and the days of the cap the requests left need.
	DailyCap      int64 `json:"daily_cap,omitempty"`
	RequestsToday int64 `json:"requests_today,omitempty"`
	DaysAtCap     int64 `json:"days_at_cap,omitempty"`
}

// estimate computes the ETA of a shard with rowsDone of rowsTotal rows done.
func estimate(m *pipeline.Manifest, rowsDone, rowsTotal int64, now time.Time) ETA {
	e := ETA{RowsLeft: max(0, rowsTotal-rowsDone), ActiveSeconds: m.ActiveSeconds, DailyCap: m.DailyCap}
	if m.ActiveSeconds > 0 && rowsDone > 0 {
		e.RowsPerSecond = float64(rowsDone) / m.ActiveSeconds
		e.Seconds = float64(e.RowsLeft) / e.RowsPerSecond
	}
	if m.Counts.RowsRead > 0 {
		e.RequestsPerRow = float64(m.Counts.RequestsSent) / float64(m.Counts.RowsRead)
		e.RequestsLeft = int64(math.Ceil(float64(e.RowsLeft) * e.RequestsPerRow))
	}
	if e.DailyCap > 0 {
		e.RequestsToday = m.DailyRequests[now.UTC().Format(time.DateOnly)]
		e.DaysAtCap = ceilDiv(e.RequestsLeft, e.DailyCap)
	}
	return e
}

// String is the ETA for a person, one line.
func (e ETA) String() string {
	s := fmt.Sprintf("%d rows left", e.RowsLeft)
	if e.RowsPerSecond > 0 {
		s += fmt.Sprintf(", about %s of sending at %.0f rows/s (the rate over %s of runs)", roundDuration(time.Duration(e.Seconds*float64(time.Second))),
			e.RowsPerSecond, roundDuration(time.Duration(e.ActiveSeconds*float64(time.Second))))
	} else {
		s += ", no rate observed yet"
	}
	if e.DailyCap > 0 {
		if e.RequestsPerRow > 0 {
			s += fmt.Sprintf("; about %d requests left (%.2f per row so far): %s at the cap of %d/day (%d sent today)",
				e.RequestsLeft, e.RequestsPerRow, plural(e.DaysAtCap, "day"), e.DailyCap, e.RequestsToday)
		} else {
			s += fmt.Sprintf("; days at the cap of %d/day unknown until requests are sent", e.DailyCap)
		}
	}
	return s
}
