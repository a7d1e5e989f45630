package pipeline

import (
	"errors"
	"fmt"
	"maps"
)

// ErrCountsMismatch means the run's counts do not add up: rows read is not
// delivered + skipped + dead-lettered, requests sent is not acked +
// dead-lettered, or the counts disagree with the rows the manifest marks as
// done. It is a bug, and a run that hits it never reports success.
var ErrCountsMismatch = errors.New("counts do not reconcile")

// rowTally is what happened to the requests of one row, added to the counts
// in one step when the row completes, so that the counts only ever describe
// completed rows: the same rows the committed progress marks as done.
type rowTally struct {
	acked, dead, retried, dups int64
}

// addRow counts one completed row. skip is the reason a row had no request
// ("" for a row with requests).
func addRow(c *Counts, skip string, t rowTally) {
	c.RowsRead++
	switch {
	case skip != "":
		if c.RowsSkipped == nil {
			c.RowsSkipped = make(map[string]int64)
		}
		c.RowsSkipped[skip]++
	case t.dead > 0:
		// One dead-lettered request makes the row dead-lettered even if its
		// other requests were accepted: the row was not fully delivered.
		c.RowsDeadLettered++
	default:
		c.RowsDelivered++
	}
	c.RequestsSent += t.acked + t.dead
	c.RequestsAcked += t.acked
	c.RequestsDeadLettered += t.dead
	c.RequestsRetried += t.retried
	c.PossibleDuplicates += t.dups
}

func addCounts(dst *Counts, src Counts) {
	dst.RowsRead += src.RowsRead
	dst.RowsDelivered += src.RowsDelivered
	dst.RowsDeadLettered += src.RowsDeadLettered
	for r, n := range src.RowsSkipped {
		if dst.RowsSkipped == nil {
			dst.RowsSkipped = make(map[string]int64)
		}
		dst.RowsSkipped[r] += n
	}
	dst.RequestsSent += src.RequestsSent
	dst.RequestsAcked += src.RequestsAcked
	dst.RequestsDeadLettered += src.RequestsDeadLettered
	dst.RequestsRetried += src.RequestsRetried
	dst.PossibleDuplicates += src.PossibleDuplicates
	dst.ObjectsSkipped += src.ObjectsSkipped
}

func cloneCounts(c Counts) Counts {
	c.RowsSkipped = maps.Clone(c.RowsSkipped)
	return c
}

func skippedRows(c Counts) int64 {
	var n int64
	for _, v := range c.RowsSkipped {
		n += v
	}
	return n
}

// checkCounts verifies the identities; marked is the number of rows the
// progress records as done (-1 when unknown).
func checkCounts(c Counts, marked int64) error {
	var errs []error
	if s := skippedRows(c); c.RowsRead != c.RowsDelivered+s+c.RowsDeadLettered {
		errs = append(errs, fmt.Errorf("rows read %d != delivered %d + skipped %d + dead-lettered %d",
			c.RowsRead, c.RowsDelivered, s, c.RowsDeadLettered))
	}
	if c.RequestsSent != c.RequestsAcked+c.RequestsDeadLettered {
		errs = append(errs, fmt.Errorf("requests sent %d != acked %d + dead-lettered %d",
			c.RequestsSent, c.RequestsAcked, c.RequestsDeadLettered))
	}
	if c.RowsDeadLettered > c.RequestsDeadLettered {
		errs = append(errs, fmt.Errorf("rows dead-lettered %d > requests dead-lettered %d",
			c.RowsDeadLettered, c.RequestsDeadLettered))
	}
	if marked >= 0 && marked != c.RowsRead {
		errs = append(errs, fmt.Errorf("rows read %d != rows marked done in the manifest %d", c.RowsRead, marked))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("check counts: %w: %w", ErrCountsMismatch, errors.Join(errs...))
}

// markedRows counts the rows the progress records as done.
func markedRows(units []UnitProgress) int64 {
	var n int64
	for i := range units {
		u := &units[i]
		if u.Done {
			n += u.Rows
			continue
		}
		n += u.Watermark + int64(len(u.Above))
	}
	return n
}
