package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"unicode/utf8"
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
	hits                       []deadHit // one per dead-lettered request
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
	for _, h := range t.hits {
		c.AddDeadLetters(h.class, h.status, h.first, 1)
	}
	c.RequestsRetried += t.retried
	c.PossibleDuplicates += t.dups
}

// Add adds src to c, field by field: counts of several runs or several
// shards add up and keep the identities Report.Check verifies.
func (c *Counts) Add(src Counts) {
	c.RowsRead += src.RowsRead
	c.RowsDelivered += src.RowsDelivered
	c.RowsDeadLettered += src.RowsDeadLettered
	for r, n := range src.RowsSkipped {
		if c.RowsSkipped == nil {
			c.RowsSkipped = make(map[string]int64)
		}
		c.RowsSkipped[r] += n
	}
	c.RequestsSent += src.RequestsSent
	c.RequestsAcked += src.RequestsAcked
	c.RequestsDeadLettered += src.RequestsDeadLettered
	c.RequestsRetried += src.RequestsRetried
	c.PossibleDuplicates += src.PossibleDuplicates
	c.RequestsReplayed += src.RequestsReplayed
	c.ObjectsSkipped += src.ObjectsSkipped
	for _, k := range slices.Sorted(maps.Keys(src.DeadLetterGroups)) {
		g := src.DeadLetterGroups[k]
		c.AddDeadLetters(k, g.Status, g.First, g.Count)
	}
}

func cloneCounts(c Counts) Counts {
	c.RowsSkipped = maps.Clone(c.RowsSkipped)
	c.DeadLetterGroups = maps.Clone(c.DeadLetterGroups)
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
	if c.RowsDeadLettered < 0 || c.RequestsDeadLettered < 0 {
		// Only a replay takes dead letters away: never more than there were.
		errs = append(errs, fmt.Errorf("negative dead-lettered counts: %d rows, %d requests",
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

// CheckCounts verifies m's count identities (see checkCounts) against the
// rows m marks done; the error wraps ErrCountsMismatch.
func (m *Manifest) CheckCounts() error { return checkCounts(m.Counts, m.marked()) }

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

// Dead-letter groups: the manifest keeps, beside the counts, how many
// dead letters each kind of refusal caused and the start of the first
// answer, so that the summary and status can say why requests were refused
// without reading the dead-letter Parquet.
const (
	// MaxDeadLetterGroups bounds the groups a manifest keeps: refusals of
	// further kinds are counted in one more group, DeadLetterOther.
	MaxDeadLetterGroups = 16
	// DeadLetterOther is the group of the kinds past MaxDeadLetterGroups.
	DeadLetterOther = "other"
	// maxGroupFirst bounds the first answer a group keeps, in bytes.
	maxGroupFirst = 200
	// maxGroupClass bounds a group's name, in bytes.
	maxGroupClass = 120
)

// DeadLetterGroup is one kind of refusal: its status (0 for a request
// refused without an answer, such as a URL too long to send), how many
// dead letters it holds, and the start of the first one's answer.
type DeadLetterGroup struct {
	Status int    `json:"status"`
	Count  int64  `json:"count"`
	First  string `json:"first,omitempty"`
}

// DeadLetterClass names the kind of a refusal, the key of its group: for an
// answer, its status and the status text ("401 Unauthorized"); for a request
// refused without an answer, the innermost error of err, the sentinel that
// says why (never the URL, which the outer errors quote).
func DeadLetterClass(status int, err error) string {
	if status > 0 {
		if t := http.StatusText(status); t != "" {
			return strconv.Itoa(status) + " " + t
		}
		return strconv.Itoa(status)
	}
	if err == nil {
		return "not sent"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	return "not sent: " + truncate(err.Error(), maxGroupClass)
}

// AddDeadLetters counts n dead letters of class in c, keeping first (the
// start of the answer) if the group is new. Past MaxDeadLetterGroups, a new
// class is counted in DeadLetterOther.
func (c *Counts) AddDeadLetters(class string, status int, first string, n int64) {
	if n <= 0 {
		return
	}
	if c.DeadLetterGroups == nil {
		c.DeadLetterGroups = make(map[string]DeadLetterGroup)
	}
	g, ok := c.DeadLetterGroups[class]
	if !ok && class != DeadLetterOther && len(c.DeadLetterGroups) >= MaxDeadLetterGroups {
		// Full: the first MaxDeadLetterGroups kinds keep their groups (the
		// kinds of a run show early), the others share one.
		class, status, first = DeadLetterOther, 0, ""
		g, ok = c.DeadLetterGroups[class]
	}
	if !ok {
		g = DeadLetterGroup{Status: status, First: truncate(first, maxGroupFirst)}
	}
	g.Count += n
	c.DeadLetterGroups[class] = g
}

// RemoveDeadLetters takes n dead letters of class out of c's groups (a
// replay delivered them, or they moved to another class). What that group
// does not hold is taken from another group of the same status (a dead
// letter of status 0 does not keep its class), then from DeadLetterOther;
// groups that reach zero go.
func (c *Counts) RemoveDeadLetters(class string, status int, n int64) {
	keys := []string{class}
	for _, k := range slices.Sorted(maps.Keys(c.DeadLetterGroups)) {
		if k != class && k != DeadLetterOther && c.DeadLetterGroups[k].Status == status {
			keys = append(keys, k)
		}
	}
	for _, k := range append(keys, DeadLetterOther) {
		g, ok := c.DeadLetterGroups[k]
		if !ok || n <= 0 {
			continue
		}
		take := min(n, g.Count)
		g.Count -= take
		n -= take
		if g.Count == 0 {
			delete(c.DeadLetterGroups, k)
		} else {
			c.DeadLetterGroups[k] = g
		}
	}
	if len(c.DeadLetterGroups) == 0 {
		c.DeadLetterGroups = nil
	}
}

// DeadLetterGroupsByCount returns the classes of c's groups, largest first
// (then by name).
func (c *Counts) DeadLetterGroupsByCount() []string {
	keys := slices.Collect(maps.Keys(c.DeadLetterGroups))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.DeadLetterGroups[b].Count, c.DeadLetterGroups[a].Count), cmp.Compare(a, b))
	})
	return keys
}

// deadHit is one dead-lettered request of a row, counted in its group when
// the row completes.
type deadHit struct {
	class  string
	status int
	first  string
}

// addDead records one dead-lettered request of the row.
func (t *rowTally) addDead(status int, err error, body []byte) {
	t.dead++
	t.hits = append(t.hits, deadHit{class: DeadLetterClass(status, err), status: status,
		first: truncate(string(body), maxGroupFirst)})
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
