package pipeline

import (
	"context"
	"slices"
	"sort"
	"sync"
)

// A plan that grows while the run goes: jobs reads the footers of the
// objects it lists while the first of them are already sent, and hands the
// objects to the run in segments (Deps.Planner).

// A Planner adds objects to the plan while the run goes: it calls add with
// the next objects in plan order, their row groups read, and returns when
// it has planned them all (nil) or failed (its error stops the run, which
// keeps what the objects added before delivered). add returns once the
// run's plan holds the objects (in a live run, once their part of the
// plan is stored too; in a dry run, which first waits until at most
// dryBacklog units of the plan are not written yet), or with the run's
// error. The objects come after Config.Objects and are new to the plan:
// none of them is in the ledger. The run keeps objs as they are: the
// Planner must not change them after.
type Planner func(ctx context.Context, add func(objs []Object) error) error

// planView is the objects and units the stages read, which a Planner
// extends while they run. Elements are never changed once added, and the
// stages copy what they read under the lock.
//
// Each segment is kept as it was added, not appended to one slice: a
// plan of a million objects would otherwise be copied whole each time
// the slice grew, holding both copies at once, and the view would hold
// its own copy of every plan entry besides the planner's (jobs hands its
// own entries, unchanged once handed).
//
// A dry run drops the segments it has written (retire), which nothing
// reads again: its memory then follows the units in flight, not the plan.
// A live run does not: its manifest holds the whole plan anyway, and its
// units finish out of order.
type planView struct {
	mu   sync.Mutex
	segs []viewSegment // in plan order, from the first not retired
	// objects and units count the plan's, retired segments included: the
	// segments keep their place in the plan, and at and object find the
	// others as before.
	objects, units int
	// planned is set when no segment will come; grown is closed and
	// replaced whenever units are added or planned is set.
	planned bool
	grown   chan struct{}
}

// viewSegment is a segment of the view: objs are objects obj0 on of the
// plan, units its units unit0 on (their Object indexes the whole plan).
type viewSegment struct {
	obj0, unit0 int
	objs        []Object
	units       []Unit
}

func newPlanView(objs []Object, units []Unit, planned bool) *planView {
	p := &planView{planned: planned, grown: make(chan struct{})}
	p.append(objs, units)
	return p
}

func (p *planView) append(objs []Object, units []Unit) {
	p.segs = append(p.segs, viewSegment{obj0: p.objects, unit0: p.units, objs: objs, units: units})
	p.objects += len(objs)
	p.units += len(units)
}

// at is unit i and its object.
func (p *planView) at(i int) (Unit, Object) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := sort.Search(len(p.segs), func(k int) bool { return p.segs[k].unit0+len(p.segs[k].units) > i })
	u := p.segs[k].units[i-p.segs[k].unit0]
	return u, p.objectLocked(u.Object)
}

// object is object i.
func (p *planView) object(i int) Object {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.objectLocked(i)
}

func (p *planView) objectLocked(i int) Object {
	k := sort.Search(len(p.segs), func(k int) bool { return p.segs[k].obj0+len(p.segs[k].objs) > i })
	return p.segs[k].objs[i-p.segs[k].obj0]
}

// segments calls f with each segment of the plan not retired, in plan
// order, under the view's lock: f must not call the view.
func (p *planView) segments(f func(s viewSegment)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.segs {
		f(s)
	}
}

// size is the number of objects and units the plan holds now.
func (p *planView) size() (objects, units int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.objects, p.units
}

// wait waits until the plan holds unit i (true) or will never hold it
// (false: the plan is complete and shorter).
func (p *planView) wait(ctx context.Context, i int) (bool, error) {
	for {
		p.mu.Lock()
		n, planned, grown := p.units, p.planned, p.grown
		p.mu.Unlock()
		switch {
		case i < n:
			return true, nil
		case planned:
			return false, nil
		}
		select {
		case <-grown:
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

// add appends a segment: objs, which the view keeps and nobody changes
// after, and units whose Object indexes the whole plan.
func (p *planView) add(objs []Object, units []Unit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.append(objs, units)
	close(p.grown)
	p.grown = make(chan struct{})
}

// retire drops the segments whose units all lie before unit n, and
// returns them in plan order. A segment without units goes once n reaches
// its place: nothing looks its objects up, as no unit indexes them. at and
// object must not be asked for a unit or object of a segment retired.
func (p *planView) retire(n int) []viewSegment {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := 0
	for k < len(p.segs) && p.segs[k].unit0+len(p.segs[k].units) <= n {
		k++
	}
	if k == 0 {
		return nil
	}
	gone := slices.Clone(p.segs[:k])
	// Cleared, not only sliced past: the array would otherwise still hold
	// their objects and units until append moves the rest.
	clear(p.segs[:k])
	p.segs = p.segs[k:]
	return gone
}

// whole reports that no segment will come: the plan holds every unit.
func (p *planView) whole() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.planned
}

// finish says that no segment will come.
func (p *planView) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.planned {
		p.planned = true
		close(p.grown)
	}
}

// planSegment is objects a Planner added, with their units in this shard
// (Object indexing the whole plan) and, in a live run, the part of the
// plan that holds them, already stored.
type planSegment struct {
	objs  []Object
	units []Unit
	part  string
	rows  int64
	// accepted is closed once the manifest holds the segment.
	accepted chan struct{}
}

// newSegment is the planSegment of objs appended to a plan of baseObj objects.
func newSegment(objs []Object, baseObj int, shard Shard) planSegment {
	units := ShardUnits(BuildPlan(objs), objs, shard)
	for i := range units {
		units[i].Object += baseObj
	}
	return planSegment{objs: objs, units: units, rows: PlanRows(units), accepted: make(chan struct{})}
}

// appendTo appends the segment to m's plan; the units with no rows are
// done at once, as at the start of a run.
func (s planSegment) appendTo(m *Manifest) {
	for _, o := range s.objs {
		m.Objects = append(m.Objects, plannedObject(o))
	}
	s.appendUnits(m)
	if s.part != "" {
		m.Parts = append(m.Parts, s.part)
		m.stored.objects, m.stored.units = len(m.Objects), len(m.Units)
	}
}

// appendUnits appends the segment's units to m's progress and counts its
// objects set aside; the units with no rows are done at once.
func (s planSegment) appendUnits(m *Manifest) {
	m.Counts.ObjectsSkipped += skippedObjects(s.objs)
	for _, u := range s.units {
		m.Units = append(m.Units, UnitProgress{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows, Done: u.Rows == 0})
	}
}

// skippedObjects counts the objects of objs set aside as bad while planned.
func skippedObjects(objs []Object) int64 {
	var n int64
	for _, o := range objs {
		if o.Skipped != "" {
			n++
		}
	}
	return n
}

// plannedObjects is objs as a plan stores them.
func plannedObjects(objs []Object) []PlannedObject {
	out := make([]PlannedObject, len(objs))
	for i, o := range objs {
		out[i] = plannedObject(o)
	}
	return out
}

// unitsProgress is units as a plan stores them, none begun.
func unitsProgress(units []Unit) []UnitProgress {
	out := make([]UnitProgress, len(units))
	for i, u := range units {
		out[i] = UnitProgress{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows}
	}
	return out
}
