package pipeline

import (
	"fmt"
	"slices"
)

// Resume: the manifest a run starts from, new or carried on from the state's.

// prepareManifest returns the manifest to begin with: the previous one with
// the listing merged in (see mergeListing), or a new one from the plan. done
// reports a finished job that the listing gives nothing new to do.
func prepareManifest(cfg Config, deps Deps) (m *Manifest, done bool, err error) {
	prev := deps.Previous
	if prev == nil || cfg.Fresh {
		return newManifest(cfg), false, nil
	}
	if prev.Job.Fingerprint != cfg.Job.Fingerprint {
		if n := unfinishedLive(prev); n > 0 {
			return nil, false, fmt.Errorf("resume shard %s: the state holds %d unfinished units of %q and this run is %q (%s): "+
				"finish them first by running the state's job again, or start over with --fresh, which discards the state's progress "+
				"(its unfinished rows are not sent, and what it delivered is sent again if listed): %w",
				cfg.Shard, n, prev.Job.Description, cfg.Job.Description,
				orNone(settingsDiff(prev.Job.Settings, cfg.Job.Settings)), ErrJobMismatch)
		}
		// Another job over a finished one: it starts afresh.
		deps.Logger.Info("the state's finished job is another one; starting afresh", "was", prev.Job.Description, "now", cfg.Job.Description)
		return newManifest(cfg), false, nil
	}
	if diff := settingsDiff(prev.Job.Settings, cfg.Job.Settings); diff != "" {
		if n := unfinishedLive(prev); n > 0 {
			return nil, false, fmt.Errorf("resume shard %s: the state holds %d unfinished units sent with other settings: %s. "+
				"Either finish them with the settings they were started with (run again with the state's values), "+
				"or start over with --fresh, which discards the state's progress: its unfinished rows are not sent with the old settings, "+
				"and objects it delivered are sent again with the new ones if listed: %w",
				cfg.Shard, n, diff, ErrJobMismatch)
		}
		deps.Logger.Warn("settings changed since the state's last run: what it delivered is not sent again (--fresh sends everything listed again)",
			"changes", diff)
	}
	if prev.Version < 4 && prev.Shard.Count > 1 {
		if n := unfinishedLive(prev); n > 0 {
			return nil, false, fmt.Errorf("resume shard %s: the state holds %d unfinished units planned by an earlier version of this program, "+
				"which split an object's row groups among shards; this version gives each shard whole objects. "+
				"Finish the job with the version that started it, or start over with --fresh on every shard "+
				"(its unfinished rows are then sent by the shard that owns them now, and what it delivered is sent again if listed): %w",
				cfg.Shard, n, ErrJobMismatch)
		}
	}
	wasFinished := prev.Status == StatusFinished
	prev.Job = cfg.Job
	prev.CoveredFrom = coveredFrom(prev.CoveredFrom, cfg.CoveredFrom)
	prev.Tables = slices.Clone(cfg.Tables)
	added := mergeListing(prev, cfg, deps.Logger)
	if wasFinished {
		if !added && deps.Planner == nil {
			return prev, true, nil
		}
		// A new cycle: the run follows no interrupted one.
		prev.Reopened++
		prev.CycleStart = cloneCounts(prev.Counts)
	}
	prev.Status = StatusRunning
	prev.Window = max(prev.Window, cfg.Window)
	return prev, false, nil
}

// newManifest is the manifest of a run that starts afresh: cfg's objects
// and this shard's units, none begun. A dry run keeps one too, for its
// report.
func newManifest(cfg Config) *Manifest {
	m := &Manifest{Job: cfg.Job, Shard: cfg.Shard, Status: StatusRunning, Window: cfg.Window, CoveredFrom: cfg.CoveredFrom,
		Tables: slices.Clone(cfg.Tables)}
	m.Objects = plannedObjects(cfg.Objects)
	m.Counts.ObjectsSkipped = skippedObjects(cfg.Objects)
	m.Units = unitsProgress(ShardUnits(BuildPlan(cfg.Objects), cfg.Objects, cfg.Shard))
	return m
}

// planUnits are m's units as the plan gives them.
func (m *Manifest) planUnits() []Unit {
	units := make([]Unit, len(m.Units))
	for i, u := range m.Units {
		units[i] = Unit{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows}
	}
	return units
}

// coveredFrom is the earlier of two CoveredFrom days ("" is unknown).
func coveredFrom(a, b string) string {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}

func orNone(s string) string {
	if s == "" {
		return "same settings"
	}
	return s
}

func objectsOf(p []PlannedObject) []Object {
	objs := make([]Object, len(p))
	for i := range p {
		objs[i] = p[i].object()
	}
	return objs
}

// unfinishedLive is unfinished leaving out the units of objects set aside:
// their rows after the failure are not read.
func unfinishedLive(m *Manifest) int {
	n := 0
	for i := range m.Units {
		u := &m.Units[i]
		if !u.Done && !u.Retired && m.Objects[u.Object].Skipped == "" {
			n++
		}
	}
	return n
}
