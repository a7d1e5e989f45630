package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// Report is what a run did: the job's cumulative counts (over every run of
// it, as the manifest holds them) and this run's speed.
type Report struct {
	Job         string `json:"job"`
	Kind        string `json:"kind,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Shard       string `json:"shard"`
	Status      string `json:"status"` // finished, stopped, failed, dry_run
	Error       string `json:"error,omitempty"`
	// DryRun marks the report of a dry run: nothing was sent, so its
	// counts hold no rows delivered and no requests sent or acknowledged;
	// WouldSend holds what a live run would send instead.
	DryRun    bool       `json:"dry_run,omitempty"`
	WouldSend *WouldSend `json:"would_send,omitempty"`

	Counts Counts `json:"counts"` // rows_skipped holds the skips by reason
	// Hints are Config.SkipHints of the reasons rows were skipped for, one
	// line each with the count: what would send those rows.
	Hints       []string `json:"hints,omitempty"`
	RowsPlanned int64    `json:"rows_planned"`
	// RowsMarked is the rows the manifest records as done; equal to
	// counts.rows_read when the counts reconcile.
	RowsMarked int64 `json:"rows_marked"`

	DeadLetters     int64           `json:"dead_letters"` // dead-lettered requests
	DeadLetterFiles []string        `json:"dead_letter_files,omitempty"`
	SkippedObjects  []SkippedObject `json:"skipped_objects,omitempty"`
	// RowsReplaced is the rows read from earlier versions of objects that
	// were set aside as unreadable and then replaced: the new version is read
	// whole, so the requests of these rows may have been sent twice.
	RowsReplaced int64 `json:"rows_replaced,omitempty"`
	// RowGroupsPruned is the row groups that the current plan's time
	// filters leave unread (TimeFilter.Pruned): objects without a day in
	// their path whose statistics put every event outside the range read;
	// RowsPruned is their rows, which rows_planned does not count.
	RowGroupsPruned int64 `json:"row_groups_pruned,omitempty"`
	RowsPruned      int64 `json:"rows_pruned,omitempty"`

	Runs    int `json:"runs"`
	Resumes int `json:"resumes"`
	Window  int `json:"window"`
	// RepeatBound is the most requests that may have been sent more than
	// once: the requests earlier runs left in flight (Manifest.MaybeRepeated:
	// a window for each run killed with work left, exactly what a clean stop
	// left unfinished, nothing for a finished run) + possible duplicates (a
	// retry after a timeout or a dropped connection may have been received
	// the first time too).
	RepeatBound int64 `json:"repeat_bound"`
	// InFlight is MaybeRepeated: the requests interrupted runs sent whose
	// rows were sent again.
	InFlight int64 `json:"in_flight_at_stops"`

	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished"`
	WallSeconds     float64   `json:"wall_seconds"`      // this run
	RowsThisRun     int64     `json:"rows_this_run"`     // rows completed by this run
	RequestsThisRun int64     `json:"requests_this_run"` // requests handled by this run
	// RequestsAttempted is every request this run handed to Convertro,
	// answered or not; LeftInFlight those of them whose rows were not done
	// when the run stopped: the next run sends them again (they are in
	// RepeatBound). A finished run leaves none.
	RequestsAttempted int64   `json:"requests_attempted,omitempty"`
	LeftInFlight      int64   `json:"left_in_flight,omitempty"`
	RowsPerSecond     float64 `json:"rows_per_second"`     // this run
	RequestsPerSecond float64 `json:"requests_per_second"` // this run
	// RateHistory is how this run's sending rate adapted to Convertro's 429s.
	RateHistory []RateSample `json:"rate_history,omitempty"`
}

// WouldSend is what a dry run would have sent: the requests, and the rows
// they would deliver (rows with at least one request).
type WouldSend struct {
	Rows     int64 `json:"rows"`
	Requests int64 `json:"requests"`
}

// RateSample is one change of the sending rate made by an adaptive
// throttle: from At on, Rate requests per second (0 = unlimited), after a
// window in which Share429 of the answers were 429 and Accepted requests per
// second were accepted.
type RateSample struct {
	At       time.Time `json:"at"`
	Rate     float64   `json:"rate"`
	Share429 float64   `json:"share_429"`
	Accepted float64   `json:"accepted"`
}

// SkippedObject is an input object set aside as unreadable.
type SkippedObject struct {
	URI    string `json:"uri"`
	Reason string `json:"reason"`
	// RowsRead is the rows of the object completed (delivered, skipped or
	// dead-lettered) before it was found unreadable in a row group;
	// RowsNotRead the rest of its rows in this shard, which were not read.
	RowsRead    int64 `json:"rows_read,omitempty"`
	RowsNotRead int64 `json:"rows_not_read,omitempty"`
}

// ReportName is the report's name in the state location.
func ReportName(s Shard) string { return fmt.Sprintf("report-%d-of-%d.json", s.Index, s.Count) }

func buildReport(m *Manifest, cfg Config, started, finished time.Time, before Counts, st StateStore) *Report {
	return reportOf(m, manifestPlan{m}, cfg, started, finished, before)
}

// reportPlan is what a report reads of a run's plan: the sums of its
// objects and units (planTally). A live run's plan is its manifest's
// (manifestPlan); a dry run's, its plan view and the units it wrote, which
// it tallies segment by segment as the writer passes them, so that it
// holds neither a manifest's copy of the plan nor the segments written.
type reportPlan interface {
	tally(t *planTally)
}

// planTally is what a report sums over a plan: the row groups its time
// filters pruned, the rows it plans, marks done and read of replaced
// versions, and the objects set aside, in plan order, with what was read
// of each.
type planTally struct {
	rowGroupsPruned, rowsPruned           int64
	rowsMarked, rowsPlanned, rowsReplaced int64
	skipped                               []SkippedObject
}

// addPlan adds to t a plan's objects (with their index) and its units'
// progress, both in plan order, the units' Object indexing those objects.
// A plan may be added in pieces, one after the other in plan order, as
// long as no piece has a unit of another's object.
func (t *planTally) addPlan(objects iter.Seq2[int, Object], units iter.Seq[UnitProgress]) {
	// Only the objects set aside are reported one by one: what was read of
	// each is kept for those, not for every object of the plan.
	skipped := map[int]int{} // object → its place in t.skipped
	for i, o := range objects {
		if o.Filter != nil && o.Skipped == "" {
			for _, rg := range o.Filter.Pruned {
				if rg >= 0 && rg < len(o.RowGroups) {
					t.rowGroupsPruned++
					t.rowsPruned += o.RowGroups[rg]
				}
			}
		}
		if o.Skipped != "" {
			skipped[i] = len(t.skipped)
			t.skipped = append(t.skipped, SkippedObject{URI: o.URI, Reason: o.Skipped})
		}
	}
	for u := range units {
		done := markedRows([]UnitProgress{u})
		t.rowsMarked += done
		if u.Retired {
			// Only what was read of a replaced version belongs to the plan.
			t.rowsPlanned += done
			t.rowsReplaced += done
			continue
		}
		t.rowsPlanned += u.Rows
		if k, ok := skipped[u.Object]; ok {
			t.skipped[k].RowsRead += done
			t.skipped[k].RowsNotRead += u.Rows - done
		}
	}
}

// add adds o, the tally of the plan that follows t's, to t.
func (t *planTally) add(o planTally) {
	t.rowGroupsPruned += o.rowGroupsPruned
	t.rowsPruned += o.rowsPruned
	t.rowsMarked += o.rowsMarked
	t.rowsPlanned += o.rowsPlanned
	t.rowsReplaced += o.rowsReplaced
	t.skipped = append(t.skipped, o.skipped...)
}

// manifestPlan is the plan a manifest holds, tallied whole.
type manifestPlan struct{ m *Manifest }

func (p manifestPlan) tally(t *planTally) {
	t.addPlan(func(yield func(int, Object) bool) {
		for i := range p.m.Objects {
			if !yield(i, p.m.Objects[i].object()) {
				return
			}
		}
	}, slices.Values(p.m.Units))
}

// reportOf is the report of m's run, its plan read from plan.
func reportOf(m *Manifest, plan reportPlan, cfg Config, started, finished time.Time, before Counts) *Report {
	r := &Report{
		Job: m.Job.Description, Kind: m.Job.Kind, Fingerprint: m.Job.Fingerprint,
		Shard: m.Shard.String(), Status: m.Status,
		Counts:      cloneCounts(m.Counts),
		DeadLetters: m.Counts.RequestsDeadLettered,
		Runs:        m.Runs, Resumes: max(m.Runs-1-m.Reopened, 0), Window: m.Window,
		Started: started.UTC(), Finished: finished.UTC(),
	}
	var t planTally
	plan.tally(&t)
	r.RowGroupsPruned, r.RowsPruned = t.rowGroupsPruned, t.rowsPruned
	r.RowsMarked, r.RowsPlanned, r.RowsReplaced = t.rowsMarked, t.rowsPlanned, t.rowsReplaced
	r.SkippedObjects = t.skipped
	r.RowsMarked += m.Pruned.Rows
	for _, reason := range slices.Sorted(maps.Keys(cfg.SkipHints)) {
		if n := m.Counts.RowsSkipped[reason]; n > 0 {
			r.Hints = append(r.Hints, fmt.Sprintf("%d rows skipped as %s: %s", n, reason, cfg.SkipHints[reason]))
		}
	}
	r.DeadLetterFiles = slices.Clone(m.DeadLetterFiles)
	r.RowsPlanned += m.Pruned.Rows
	r.InFlight = m.MaybeRepeated
	r.RepeatBound = m.MaybeRepeated + m.Counts.PossibleDuplicates
	r.WallSeconds = finished.Sub(started).Seconds()
	r.RowsThisRun = m.Counts.RowsRead - before.RowsRead
	r.RequestsThisRun = m.Counts.RequestsSent - before.RequestsSent
	if r.WallSeconds > 0 {
		r.RowsPerSecond = float64(r.RowsThisRun) / r.WallSeconds
		r.RequestsPerSecond = float64(r.RequestsThisRun) / r.WallSeconds
	}
	if m.Status == StatusDryRun {
		// The dry run counts the requests it writes the way a run counts
		// acknowledged ones; the report says what they are.
		c := &r.Counts
		r.DryRun = true
		// Requests a live run would dead-letter unsent (over the URL
		// limit) are counted dead-lettered, not among those it would send.
		r.WouldSend = &WouldSend{Rows: c.RowsDelivered, Requests: c.RequestsAcked}
		c.RowsDelivered, c.RequestsSent, c.RequestsAcked = 0, c.RequestsDeadLettered, 0
	}
	return r
}

// snapshot is the report of a live run so far, for Deps.Committed: the
// counts as just committed, and this run's figures from its progress.
// Only the checkpointer calls it, as it owns the manifest.
func (r *liveRun) snapshot() *Report {
	now := r.deps.Now()
	rep := buildReport(r.m, r.cfg, r.prog.began, now, r.m.Counts, nil)
	rep.RowsThisRun, rep.RequestsThisRun = r.prog.rows.Load(), r.prog.reqs.Load()
	if rep.WallSeconds > 0 {
		rep.RowsPerSecond = float64(rep.RowsThisRun) / rep.WallSeconds
		rep.RequestsPerSecond = float64(rep.RequestsThisRun) / rep.WallSeconds
	}
	return rep
}

// JSON is the report as written to report-<i>-of-<n>.json.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return append(b, '\n'), nil
}

// Check verifies the count identities: rows read = delivered + skipped +
// dead-lettered, requests sent = acked + dead-lettered, and rows read = rows
// marked done. It returns an error wrapping ErrCountsMismatch.
func (r *Report) Check() error {
	c := r.Counts
	if r.WouldSend != nil {
		c.RowsDelivered, c.RequestsAcked = r.WouldSend.Rows, r.WouldSend.Requests
		c.RequestsSent += r.WouldSend.Requests
	}
	return checkCounts(c, r.RowsMarked)
}

// Summary writes the report for a person, a few lines for stderr.
func (r *Report) Summary(w io.Writer) error {
	var b strings.Builder
	c := &r.Counts
	fmt.Fprintf(&b, "job %s, shard %s: %s\n", orDash(r.Job), r.Shard, r.Status)
	if r.Error != "" {
		fmt.Fprintf(&b, "  error:        %s\n", r.Error)
	}
	if r.DryRun {
		var ws WouldSend
		if r.WouldSend != nil {
			ws = *r.WouldSend
		}
		fmt.Fprintf(&b, "  dry run:      nothing was sent\n")
		fmt.Fprintf(&b, "  rows:         %d of %d read = %d would be delivered + %d skipped\n",
			c.RowsRead, r.RowsPlanned, ws.Rows, skippedRows(*c))
	} else {
		fmt.Fprintf(&b, "  rows:         %d of %d read = %d delivered + %d skipped + %d dead-lettered\n",
			c.RowsRead, r.RowsPlanned, c.RowsDelivered, skippedRows(*c), c.RowsDeadLettered)
	}
	if len(c.RowsSkipped) > 0 {
		var parts []string
		for _, reason := range slices.Sorted(maps.Keys(c.RowsSkipped)) {
			parts = append(parts, fmt.Sprintf("%s %d", reason, c.RowsSkipped[reason]))
		}
		fmt.Fprintf(&b, "  skipped:      %s\n", strings.Join(parts, ", "))
	}
	if r.RowGroupsPruned > 0 {
		fmt.Fprintf(&b, "  not read:     %d row groups (%d rows) of objects without a day in their path: their timestamp statistics lie outside the date range\n",
			r.RowGroupsPruned, r.RowsPruned)
	}
	for _, h := range r.Hints {
		fmt.Fprintf(&b, "  hint:         %s\n", h)
	}
	if r.DryRun {
		ws := r.WouldSend
		if ws == nil {
			ws = &WouldSend{}
		}
		fmt.Fprintf(&b, "  requests:     %d would be sent\n", ws.Requests)
	} else {
		fmt.Fprintf(&b, "  requests:     %d sent = %d acked + %d dead-lettered (%d retried, %d possibly sent twice)\n",
			c.RequestsSent, c.RequestsAcked, c.RequestsDeadLettered, c.RequestsRetried, c.PossibleDuplicates)
	}
	if r.DeadLetters > 0 {
		where := "see the dead-letter files of earlier runs"
		switch n := len(r.DeadLetterFiles); {
		case n > 3:
			where = fmt.Sprintf("%d parts (convertro-etl deadletters --state … lists them)", n)
		case n > 0:
			where = strings.Join(r.DeadLetterFiles, ", ")
		}
		fmt.Fprintf(&b, "  dead letters: %d requests in %s, by refusal:\n", r.DeadLetters, where)
		WriteDeadLetterGroups(&b, "                ", *c)
	}
	for _, o := range r.SkippedObjects {
		fmt.Fprintf(&b, "  skipped file: %s (%s)\n", o.URI, o.Reason)
		if o.RowsRead > 0 {
			fmt.Fprintf(&b, "                %d of its rows were read before the failure, %d were not read; a run of the same job after the file is replaced reads it whole\n",
				o.RowsRead, o.RowsNotRead)
		}
	}
	if r.RowsReplaced > 0 {
		fmt.Fprintf(&b, "  replaced:     %d rows were read from earlier versions of files set aside and since replaced; their requests may have been sent twice\n",
			r.RowsReplaced)
	}
	if r.Status != StatusDryRun {
		fmt.Fprintf(&b, "  runs:         %d (%d resumes); at most %d requests sent twice (%d left in flight by interrupted runs + %d possible duplicates)\n",
			r.Runs, r.Resumes, r.RepeatBound, r.InFlight, c.PossibleDuplicates)
	}
	if n := len(r.RateHistory); n > 0 {
		lo := r.RateHistory[0].Rate
		for _, p := range r.RateHistory {
			if p.Rate > 0 && (lo == 0 || p.Rate < lo) {
				lo = p.Rate
			}
		}
		last := r.RateHistory[n-1]
		now := "unlimited"
		if last.Rate > 0 {
			now = fmt.Sprintf("%.0f/s", last.Rate)
		}
		fmt.Fprintf(&b, "  throttle:     %d rate changes on 429s; lowest %.0f/s, last %s (429 share %.1f%%, %.0f accepted/s)\n",
			n, lo, now, 100*last.Share429, last.Accepted)
	}
	verb := ""
	if r.DryRun {
		verb = " to send"
	}
	fmt.Fprintf(&b, "  this run:     %d rows, %d requests%s in %.1fs: %.0f rows/s, %.0f requests/s\n",
		r.RowsThisRun, r.RequestsThisRun, verb, r.WallSeconds, r.RowsPerSecond, r.RequestsPerSecond)
	if r.LeftInFlight > 0 {
		fmt.Fprintf(&b, "  in flight:    %d of the %d requests this run sent belong to rows not done when it stopped: the next run sends them again\n",
			r.LeftInFlight, r.RequestsAttempted)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteDeadLetterGroups writes c's dead letters by kind of refusal, one
// line each, largest first: `3858 × 401 Unauthorized "body start"`. Each
// line starts with indent. The count of dead letters recorded before
// manifests kept groups has no kind: it is written as "of unknown kind".
func WriteDeadLetterGroups(w io.Writer, indent string, c Counts) {
	var grouped int64
	for _, k := range c.DeadLetterGroupsByCount() {
		g := c.DeadLetterGroups[k]
		grouped += g.Count
		first := ""
		if g.First != "" {
			first = fmt.Sprintf(" %q", g.First)
		}
		fmt.Fprintf(w, "%s%d × %s%s\n", indent, g.Count, k, first)
	}
	if n := c.RequestsDeadLettered - grouped; n > 0 && len(c.DeadLetterGroups) > 0 {
		fmt.Fprintf(w, "%s%d of unknown kind (recorded before kinds were kept)\n", indent, n)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeMissingReport writes rep as the shard's report if the state holds
// none: a run killed after its final commit but before its report landed
// would otherwise leave no report for good, since every later run finds
// the job finished and does nothing. An existing report (the finished
// run's own) is left alone. Failures are logged: the manifest, not the
// report, is the record of progress.
func writeMissingReport(ctx context.Context, deps Deps, cfg Config, rep *Report) {
	if deps.State == nil {
		return
	}
	name := ReportName(cfg.Shard)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.FinalCommitTimeout)
	defer cancel()
	_, _, err := deps.State.Read(ctx, name)
	if errors.Is(err, objstore.ErrNotFound) {
		var data []byte
		if data, err = rep.JSON(); err == nil {
			_, err = deps.State.Write(ctx, name, data, objstore.IfAbsent)
		}
	}
	if err != nil && !errors.Is(err, objstore.ErrPrecondition) { // objstore.ErrPrecondition: another run wrote it meanwhile
		deps.Logger.Warn("write missing report", "uri", deps.State.URI(name), "err", err)
	}
}
