package pipeline

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
)

// A state location holds a recurring job: the same kind, sources and
// settings run again and again (every night, say), each run over the range
// it is given. The shard's manifest is the job's ledger: every object it
// planned, at the version it planned, and how far each got. A run merges the
// listing it is given into that ledger (mergeListing):
//
//   - an object the ledger does not hold is new (a new day, or a late
//     partition of a day already run): its units are appended, so the
//     unfinished work of an earlier run comes first;
//   - an object the ledger holds at the same version is left as it is: done
//     objects are not read again; unless jobs gives it another time filter
//     (an object without a day, in a run over other instants), when a
//     finished one is planned again with it;
//   - an object the listing shows at another version is planned again at the
//     version found, its earlier units retired (the rows they marked stay
//     counted), and a warning says that rows of the earlier version may be
//     sent again;
//   - an unfinished object the listing no longer holds is set aside as gone
//     (the run ends incomplete and says so), rather than block every later
//     run;
//   - a finished (or set-aside) object the listing no longer holds fell out
//     of the range the runs look at (or was deleted): it is pruned from the
//     ledger, its rows kept in Manifest.Pruned, so that the ledger, and what
//     a commit writes, grows with the range a run covers, not with the
//     history of the job.

// SkipGone is the reason an unfinished object that disappeared from the
// listing is set aside with.
const SkipGone = "gone from the source before it was finished"

// Pruned is what the ledger forgot: finished objects that left the range
// the runs list, and their units' rows, kept so the counts still reconcile;
// Rows also holds the rows of the earlier units of objects planned again
// with another time filter (refilter).
type Pruned struct {
	Objects int64 `json:"objects"`
	Rows    int64 `json:"rows"`
}

// mergeListing merges the listing cfg.Objects into m (see above) and
// reports whether it left work to do that m did not hold before.
func mergeListing(m *Manifest, cfg Config, log *slog.Logger) (added bool) {
	listed := make(map[string]int, len(cfg.Objects))
	for i, o := range cfg.Objects {
		listed[o.URI] = i
	}
	unfinished := unfinishedObjects(m)
	seen := make(map[string]bool, len(m.Objects))
	keep := make([]bool, len(m.Objects))
	var rewritten, gone []string
	for i := range m.Objects {
		p := &m.Objects[i]
		seen[p.URI] = true
		j, ok := listed[p.URI]
		if !ok {
			if unfinished[i] && p.Skipped == "" {
				p.Skipped = SkipGone
				m.Counts.ObjectsSkipped++
				gone = append(gone, p.URI)
				keep[i] = true // reported by this run, pruned by the next
			}
			continue // out of the listed range: pruned
		}
		keep[i] = true
		o := cfg.Objects[j]
		if o.Size == p.Size && o.Version == p.Version {
			if !o.Filter.Equal(p.Filter) && p.Skipped == "" && !unfinished[i] {
				// The same version, read for other instants (a recurring
				// run over an export without days).
				if refilter(m, i, o, cfg.Shard) {
					added = true
				}
			}
			continue
		}
		// Another version. A set-aside object gets another chance; a
		// delivered or partly delivered one is read again at the version
		// found, since it may hold rows the earlier one did not.
		if p.Skipped == "" {
			rewritten = append(rewritten, p.URI)
		}
		if replan(m, i, o, cfg.Shard, log) {
			added = true
		}
	}
	if len(rewritten) > 0 {
		log.Warn("objects rewritten since they were planned are read again at their new version; rows of the earlier version they already delivered may be sent again",
			"objects", len(rewritten), "first", rewritten[0])
	}
	if len(gone) > 0 {
		log.Warn("unfinished objects are gone from the source: set aside, their rows not yet read are not sent",
			"objects", len(gone), "first", gone[0])
	}
	prune(m, keep)

	// New objects, in listing order (jobs sorts it: by URI, or oldest
	// partition first for a migration).
	var fresh []Object
	for _, o := range cfg.Objects {
		if !seen[o.URI] {
			fresh = append(fresh, o)
		}
	}
	if len(fresh) > 0 {
		base := len(m.Objects)
		for _, o := range fresh {
			m.Objects = append(m.Objects, plannedObject(o))
			if o.Skipped != "" {
				m.Counts.ObjectsSkipped++
				added = true // a bad file is news the run must report
			}
		}
		for _, u := range ShardUnits(BuildPlan(fresh), fresh, cfg.Shard) {
			m.Units = append(m.Units, UnitProgress{Object: base + u.Object, RowGroup: u.RowGroup, Rows: u.Rows})
			added = true
		}
	}
	return added
}

// unfinishedObjects marks the objects with a unit still to read.
func unfinishedObjects(m *Manifest) []bool {
	out := make([]bool, len(m.Objects))
	for i := range m.Units {
		u := &m.Units[i]
		if !u.Done && !u.Retired && u.Watermark < u.Rows {
			out[u.Object] = true
		}
	}
	return out
}

// replan retires the units of object i and plans version o of it in its
// place, keeping its index. It reports whether units were added.
func replan(m *Manifest, i int, o Object, shard Shard, log *slog.Logger) bool {
	p := &m.Objects[i]
	var replaced int64
	for j := range m.Units {
		if u := &m.Units[j]; u.Object == i && !u.Retired {
			u.Retired = true
			replaced += markedRows(m.Units[j : j+1])
		}
	}
	log.Info("planning an object again at another version", "object", p.URI,
		"size", o.Size, "version", o.Version, "was_size", p.Size, "was_version", p.Version,
		"was_set_aside", p.Skipped != "", "rows_read_from_earlier_version", replaced)
	wasSkipped := p.Skipped != ""
	*p = plannedObject(o)
	m.edited = true
	switch {
	case o.Skipped != "" && !wasSkipped:
		m.Counts.ObjectsSkipped++
	case o.Skipped == "" && wasSkipped:
		m.Counts.ObjectsSkipped--
	}
	if o.Skipped != "" {
		return !wasSkipped
	}
	added := false
	for rg, rows := range o.RowGroups {
		if shard.Owns(o.Key) && !o.Filter.pruned(rg) {
			m.Units = append(m.Units, UnitProgress{Object: i, RowGroup: rg, Rows: rows})
			added = true
		}
	}
	return added
}

// refilter plans object i, finished, again with o's time filter, at the
// same version. Its earlier units are dropped, their rows kept in
// Pruned.Rows so that the counts still reconcile: a recurring job reads such
// an object once a night, and the ledger must not grow with the nights. It
// reports whether units were added.
func refilter(m *Manifest, i int, o Object, shard Shard) bool {
	units := m.Units[:0]
	for _, u := range m.Units {
		if u.Object == i {
			m.Pruned.Rows += markedRows([]UnitProgress{u})
			continue
		}
		units = append(units, u)
	}
	clear(m.Units[len(units):])
	m.Units = units
	m.Objects[i].Filter = o.Filter.Clone()
	m.edited = true
	added := false
	for rg, rows := range o.RowGroups {
		if shard.Owns(o.Key) && !o.Filter.pruned(rg) {
			m.Units = append(m.Units, UnitProgress{Object: i, RowGroup: rg, Rows: rows})
			added = true
		}
	}
	return added
}

// prune drops the objects not kept, and their units, renumbering the rest.
func prune(m *Manifest, keep []bool) {
	if !slices.Contains(keep, false) {
		return
	}
	m.edited = true
	index := make([]int, len(m.Objects))
	objs := m.Objects[:0]
	for i, o := range m.Objects {
		if !keep[i] {
			index[i] = -1
			m.Pruned.Objects++
			continue
		}
		index[i] = len(objs)
		objs = append(objs, o)
	}
	clear(m.Objects[len(objs):])
	m.Objects = objs
	units := m.Units[:0]
	for _, u := range m.Units {
		if index[u.Object] < 0 {
			m.Pruned.Rows += markedRows([]UnitProgress{u})
			continue
		}
		u.Object = index[u.Object]
		units = append(units, u)
	}
	clear(m.Units[len(units):])
	m.Units = units
}

// plannedObject is o as the manifest plans it. Row groups are never
// changed once read from a footer, so the two share them: a plan of a
// million objects holds their row groups once.
func plannedObject(o Object) PlannedObject {
	return PlannedObject{URI: o.URI, Key: o.Key, Size: o.Size, Version: o.Version,
		RowGroups: o.RowGroups, Skipped: o.Skipped, Day: o.Day, Filter: o.Filter.Clone()}
}

// object is the plan entry o stands for; it shares o's row groups and
// filter, which nobody changes once planned.
func (o *PlannedObject) object() Object {
	return Object{URI: o.URI, Key: o.Key, Size: o.Size, Version: o.Version,
		RowGroups: o.RowGroups, Skipped: o.Skipped, Day: o.Day, Filter: o.Filter}
}

// settingsDiff names the settings in which two descriptions of a job
// differ, as `name "old" → "new"`, sorted by name.
func settingsDiff(was, now map[string]string) string {
	var names []string
	for k := range was {
		names = append(names, k)
	}
	for k := range now {
		if _, ok := was[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		if was[k] != now[k] {
			parts = append(parts, fmt.Sprintf("%s %q → %q", k, was[k], now[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// setAside counts the objects the ledger holds as set aside now.
func setAside(m *Manifest) int {
	n := 0
	for i := range m.Objects {
		if m.Objects[i].Skipped != "" {
			n++
		}
	}
	return n
}
