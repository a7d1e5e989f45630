package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

var errTooLong = errors.New("request not sent: the URL is longer than the job sends")

func TestDeadLetterClass(t *testing.T) {
	for _, tc := range []struct {
		status int
		err    error
		want   string
	}{
		{401, fmt.Errorf("GET http://x/?sid=secret: %w", errors.New("401 Unauthorized: nope")), "401 Unauthorized"},
		{499, nil, "499"},
		// No answer: the innermost error names the kind, not the URL the
		// outer ones quote.
		{0, fmt.Errorf("GET http://x/?sid=secret: %w", fmt.Errorf("20000 bytes, over 16384: %w", errTooLong)), "not sent: " + errTooLong.Error()},
		{0, nil, "not sent"},
	} {
		if got := DeadLetterClass(tc.status, tc.err); got != tc.want {
			t.Errorf("DeadLetterClass(%d, %v) = %q, want %q", tc.status, tc.err, got, tc.want)
		}
	}
}

// TestDeadLetterGroupsBounded: the groups stay few and small whatever the
// refusals: at most MaxDeadLetterGroups kinds plus "other", first answers
// cut to ~200 bytes, and the counts always add up to what was added.
func TestDeadLetterGroupsBounded(t *testing.T) {
	var c Counts
	var total int64
	for i := range 3 * MaxDeadLetterGroups {
		n := int64(i%4 + 1)
		c.AddDeadLetters(fmt.Sprintf("4%02d kind", i), 400+i, strings.Repeat("é", 500), n)
		total += n
	}
	c.AddDeadLetters("400 kind 0", 400, "", 0) // nothing
	if len(c.DeadLetterGroups) != MaxDeadLetterGroups+1 {
		t.Errorf("%d groups, want %d", len(c.DeadLetterGroups), MaxDeadLetterGroups+1)
	}
	var sum int64
	for k, g := range c.DeadLetterGroups {
		sum += g.Count
		if len(g.First) > maxGroupFirst+len("…") {
			t.Errorf("group %s keeps %d bytes of its first answer", k, len(g.First))
		}
	}
	if sum != total || c.DeadLetterGroups[DeadLetterOther].Count == 0 {
		t.Errorf("groups hold %d, want %d (other %+v)", sum, total, c.DeadLetterGroups[DeadLetterOther])
	}
	if g := c.DeadLetterGroups["400 kind"]; g.Count != 1 || !strings.HasSuffix(g.First, "é…") {
		t.Errorf("first group %+v: want count 1 and its first answer cut on a rune boundary", g)
	}

	// A replay takes delivered ones out; what a group lacks comes from
	// "other", and empty groups go.
	c.RemoveDeadLetters("400 kind", 400, 1)
	if _, ok := c.DeadLetterGroups["400 kind"]; ok {
		t.Error("an emptied group stays")
	}
	other := c.DeadLetterGroups[DeadLetterOther].Count
	c.RemoveDeadLetters("499 unknown", 499, 2)
	if got := c.DeadLetterGroups[DeadLetterOther].Count; got != other-2 {
		t.Errorf("other = %d after removing 2 of an ungrouped kind, want %d", got, other-2)
	}

	// A kind not kept by name is found by its status.
	c.AddDeadLetters("not sent: too long", 0, "", 3)
	c.RemoveDeadLetters("not sent", 0, 3)
	if _, ok := c.DeadLetterGroups["not sent: too long"]; ok {
		t.Error("a status-0 dead letter removed without its class stays in its group")
	}

	// Merged counts (a dry run's units) add group by group.
	var d Counts
	d.Add(c)
	d.Add(c)
	if d.DeadLetterGroups["401 kind"].Count != 2*c.DeadLetterGroups["401 kind"].Count {
		t.Errorf("merged groups %+v", d.DeadLetterGroups)
	}
	cl := cloneCounts(c)
	cl.AddDeadLetters("401 kind", 401, "", 5)
	if cl.DeadLetterGroups["401 kind"].Count == c.DeadLetterGroups["401 kind"].Count {
		t.Error("cloneCounts shares the groups")
	}
}
