package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// How a manifest is stored (version 6): the plan (objects and units) in
// immutable parts of their own, each named by its content and written once,
// when the objects it holds are planned; the manifest itself, rewritten at
// every commit, names the parts and holds the progress in compact form.
// Units finish roughly in plan order, so the done units collapse into a
// few runs and a commit's size follows the window of work in flight, not
// the size of the job; a segment of objects planned while the run goes
// writes its own part and adds one name to the manifest, so the plan of a
// million row groups is written once, in pieces, not once a second.

// UnitRanges is the progress of a shard's units in compact form.
type UnitRanges struct {
	// Count is the number of units in the plan.
	Count int `json:"count"`
	// Done are runs [first, last] of units whose every row is done.
	Done [][2]int `json:"done,omitempty"`
	// Partial are the units with some progress that are not in Done.
	Partial []PartialUnit `json:"partial,omitempty"`
}

// PartialUnit is the progress of one unit that is not simply done.
type PartialUnit struct {
	Unit      int     `json:"unit"`
	Watermark int64   `json:"watermark,omitempty"`
	Above     []int64 `json:"above,omitempty"`
	Done      bool    `json:"done,omitempty"`
}

// SetAside is an object of the plan set aside as unreadable; its URI is
// kept too, for readers of a summary (no plan).
type SetAside struct {
	Object int    `json:"object"`
	URI    string `json:"uri"`
	Reason string `json:"reason"`
}

// SetAsideObjects are the objects of the shard set aside as unreadable,
// from the plan or, for a summary (ListManifests), from the manifest.
func (m *Manifest) SetAsideObjects() []SkippedObject {
	var out []SkippedObject
	if m.Objects == nil {
		for _, s := range m.SetAside {
			out = append(out, SkippedObject{URI: s.URI, Reason: s.Reason})
		}
		return out
	}
	for _, o := range m.Objects {
		if o.Skipped != "" {
			out = append(out, SkippedObject{URI: o.URI, Reason: o.Skipped})
		}
	}
	return out
}

// AllDone reports whether every unit of the shard is done, from the units
// or, for a summary (ListManifests), from the compact progress.
func (m *Manifest) AllDone() bool {
	if m.Units == nil && m.Progress != nil {
		n := 0
		for _, r := range m.Progress.Done {
			n += r[1] - r[0] + 1
		}
		for _, p := range m.Progress.Partial {
			if p.Done {
				n++
			}
		}
		return n == m.Progress.Count
	}
	for i := range m.Units {
		if !m.Units[i].Done {
			return false
		}
	}
	return true
}

// compactUnits is units' progress in compact form. A unit is in a Done run
// when it is done with every row below the watermark; one with any other
// progress is Partial; one with none is left out.
func compactUnits(units []UnitProgress) *UnitRanges {
	r := &UnitRanges{Count: len(units)}
	start := -1
	for i := range units {
		u := &units[i]
		plain := u.Done && u.Watermark == u.Rows && len(u.Above) == 0
		if plain {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			r.Done = append(r.Done, [2]int{start, i - 1})
			start = -1
		}
		if u.Done || u.Watermark > 0 || len(u.Above) > 0 {
			r.Partial = append(r.Partial, PartialUnit{Unit: i, Watermark: u.Watermark, Above: u.Above, Done: u.Done})
		}
	}
	if start >= 0 {
		r.Done = append(r.Done, [2]int{start, len(units) - 1})
	}
	return r
}

// apply sets units' progress from r; the units come from the plan.
func (r *UnitRanges) apply(units []UnitProgress) error {
	if r.Count != len(units) {
		return fmt.Errorf("the progress counts %d units, the plan %d", r.Count, len(units))
	}
	for _, d := range r.Done {
		if d[0] < 0 || d[1] >= len(units) || d[0] > d[1] {
			return fmt.Errorf("done units %d to %d outside the plan's %d", d[0], d[1], len(units))
		}
		for i := d[0]; i <= d[1]; i++ {
			units[i].Watermark, units[i].Done = units[i].Rows, true
		}
	}
	for _, p := range r.Partial {
		if p.Unit < 0 || p.Unit >= len(units) {
			return fmt.Errorf("unit %d outside the plan's %d", p.Unit, len(units))
		}
		u := &units[p.Unit]
		u.Watermark, u.Above, u.Done = p.Watermark, p.Above, p.Done
	}
	return nil
}

// planDoc is one stored part of the plan: objects (without Skipped, which
// the manifest holds) and, per unit, object, row group, rows and whether
// it is retired (1) or not (0). FirstObject and FirstUnit are where the
// part starts in the plan; a unit's object indexes the whole plan, so a
// part's units may name objects of earlier parts. (Version 4 and 5 plans
// are one part starting at 0.)
type planDoc struct {
	Version     int             `json:"version"`
	Shard       Shard           `json:"shard"`
	FirstObject int             `json:"first_object,omitempty"`
	FirstUnit   int             `json:"first_unit,omitempty"`
	Objects     []PlannedObject `json:"objects"`
	Units       [][4]int64      `json:"units"`
}

// encodePart returns the part of the plan that holds objs and units,
// starting at object firstObj and unit firstUnit, and its name, which its
// content decides: the same part always has the same name.
func encodePart(shard Shard, firstObj, firstUnit int, objs []PlannedObject, units []UnitProgress) ([]byte, string, error) {
	d := planDoc{Version: ManifestVersion, Shard: shard, FirstObject: firstObj, FirstUnit: firstUnit,
		Objects: make([]PlannedObject, len(objs)), Units: make([][4]int64, len(units))}
	for i, o := range objs {
		o.Skipped = ""
		d.Objects[i] = o
	}
	for i, u := range units {
		retired := int64(0)
		if u.Retired {
			retired = 1
		}
		d.Units[i] = [4]int64{int64(u.Object), int64(u.RowGroup), u.Rows, retired}
	}
	data, err := json.Marshal(&d)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(data)
	return data, fmt.Sprintf("%s%x.json", partPrefix(shard), sum[:8]), nil
}

// partPrefix begins the name of every part of shard's plans.
func partPrefix(shard Shard) string { return fmt.Sprintf("plan-%d-of-%d-", shard.Index, shard.Count) }

// dropOrphanParts deletes the parts of the shard's plans that m, the
// manifest just written, does not name: stale, those its plan replaced
// (writePlan), and, where the store can list, any other: stored by a run
// stopped before the commit that would have named them, or by the plan a
// fresh start replaced. The lease holder calls it before it stores a part
// of its own, so no part it will name is deleted; a process that has lost
// the lease may still store one, which its commit, refused, never names.
// It costs one listing of the shard's parts. A failure leaves them, which
// costs space only.
func dropOrphanParts(ctx context.Context, st StateStore, m *Manifest, stale []string) {
	named := make(map[string]bool, len(m.Parts))
	for _, p := range m.Parts {
		named[p] = true
	}
	names := stale
	if l, ok := st.(stateLister); ok {
		if listed, err := l.ListKeys(ctx, partPrefix(m.Shard)); err == nil {
			names = listed
		}
	}
	for _, name := range names {
		if !named[name] {
			_ = st.Delete(ctx, name)
		}
	}
}

// storePart writes a part under its name unless an object has that name
// already (the same name is the same content).
func storePart(ctx context.Context, st StateStore, name string, data []byte) error {
	if _, err := st.Write(ctx, name, data, objstore.IfAbsent); err != nil && !errors.Is(err, objstore.ErrPrecondition) {
		return fmt.Errorf("store plan part %s: %w", st.URI(name), err)
	}
	return nil
}

// storedManifest is m as a commit writes it: without the plan, with the
// compact progress and the summary.
func storedManifest(m *Manifest) *Manifest {
	s := *m
	s.Objects, s.Units = nil, nil
	s.Progress = compactUnits(m.Units)
	s.SetAside = nil
	for i, o := range m.Objects {
		if o.Skipped != "" {
			s.SetAside = append(s.SetAside, SetAside{Object: i, URI: o.URI, Reason: o.Skipped})
		}
	}
	s.RowsDone, s.RowsTotal = m.RowsProgress()
	return &s
}

// writePlan stores what the parts of m's plan do not hold yet and records
// the parts in m: nothing when the plan is as stored, one part with the
// objects and units appended since, or, when what the parts hold was
// changed in place, the whole plan as one part. It returns the parts no
// longer named, for the caller to delete once the manifest no longer
// names them.
func writePlan(ctx context.Context, st StateStore, m *Manifest) (stale []string, err error) {
	whole := m.edited || m.stored.objects > len(m.Objects) || m.stored.units > len(m.Units)
	from, fromUnit := m.stored.objects, m.stored.units
	if whole {
		from, fromUnit = 0, 0
	}
	if !whole && from == len(m.Objects) && fromUnit == len(m.Units) {
		return nil, nil
	}
	data, name, err := encodePart(m.Shard, from, fromUnit, m.Objects[from:], m.Units[fromUnit:])
	if err != nil {
		return nil, fmt.Errorf("encode plan of shard %s: %w", m.Shard, err)
	}
	if err := storePart(ctx, st, name, data); err != nil {
		return nil, err
	}
	if whole {
		for _, p := range m.Parts {
			if p != name {
				stale = append(stale, p)
			}
		}
		m.Parts = nil
	}
	m.Parts = append(m.Parts, name)
	m.stored.objects, m.stored.units, m.edited = len(m.Objects), len(m.Units), false
	return stale, nil
}

// loadPlan reads the parts of the plan a manifest of version 4 or later
// names and rebuilds its objects and units with their progress; a manifest
// of an earlier version holds them already.
func loadPlan(ctx context.Context, st StateStore, m *Manifest) error {
	if m.Progress == nil {
		m.stored.objects, m.stored.units = 0, 0 // written as a first part by Begin
		return nil
	}
	// The parts are read and decoded side by side (decoding a million
	// units is most of a resume's start), then joined in order.
	docs := make([]*planDoc, len(m.Parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, part := range m.Parts {
		g.Go(func() error {
			d, err := readPlanPart(gctx, st, m.Shard, part)
			docs[i] = d
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	m.Objects, m.Units = nil, nil
	for i, d := range docs {
		if err := appendPart(m, d, st.URI(m.Parts[i])); err != nil {
			return err
		}
		docs[i] = nil
	}
	for _, s := range m.SetAside {
		if s.Object < 0 || s.Object >= len(m.Objects) {
			return fmt.Errorf("decode manifest %s: %w: object %d set aside of %d", st.URI(ManifestName(m.Shard)), ErrBadManifest, s.Object, len(m.Objects))
		}
		m.Objects[s.Object].Skipped = s.Reason
	}
	if err := m.Progress.apply(m.Units); err != nil {
		return fmt.Errorf("decode manifest %s: %w: %w", st.URI(ManifestName(m.Shard)), ErrBadManifest, err)
	}
	m.Progress, m.SetAside = nil, nil
	m.stored.objects, m.stored.units, m.edited = len(m.Objects), len(m.Units), false
	return nil
}

// readPlanPart reads and decodes one part of shard's plan.
func readPlanPart(ctx context.Context, st StateStore, shard Shard, name string) (*planDoc, error) {
	data, _, err := st.Read(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read the plan of manifest %s: %w", st.URI(ManifestName(shard)), err)
	}
	var d planDoc
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode plan %s: %w: %w", st.URI(name), ErrBadManifest, err)
	}
	return &d, nil
}

// appendPart appends the objects and units of part d (read from uri) to
// m's, which must end where it starts.
func appendPart(m *Manifest, d *planDoc, uri string) error {
	if d.FirstObject != len(m.Objects) || d.FirstUnit != len(m.Units) {
		return fmt.Errorf("decode plan %s: %w: the part starts at object %d and unit %d, the parts before it end at %d and %d",
			uri, ErrBadManifest, d.FirstObject, d.FirstUnit, len(m.Objects), len(m.Units))
	}
	m.Objects = append(m.Objects, d.Objects...)
	m.Units = slices.Grow(m.Units, len(d.Units))
	for i, u := range d.Units {
		if u[0] < 0 || u[1] < 0 || u[2] < 0 {
			return fmt.Errorf("decode plan %s: %w: unit %d is %v", uri, ErrBadManifest, d.FirstUnit+i, u)
		}
		m.Units = append(m.Units, UnitProgress{Object: int(u[0]), RowGroup: int(u[1]), Rows: u[2], Retired: u[3] == 1})
	}
	return nil
}
