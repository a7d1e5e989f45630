package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// How a manifest is stored (version 4): the plan (objects and units) in an
// immutable object of its own, named by its content and written when it
// changes; the manifest itself, rewritten at every commit, holds the
// progress in compact form. Units finish roughly in plan order, so the
// done units collapse into a few runs and a commit's size follows the
// window of work in flight, not the size of the job: the plan of a
// million row groups is written once per run, not once a second.

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

// planDoc is the stored plan: the objects (without Skipped, which the
// manifest holds) and, per unit, object, row group, rows and whether it is
// retired (1) or not (0).
type planDoc struct {
	Version int             `json:"version"`
	Shard   Shard           `json:"shard"`
	Objects []PlannedObject `json:"objects"`
	Units   [][4]int64      `json:"units"`
}

// encodePlan returns m's plan as stored and its name, which its content
// decides: the same plan always has the same name.
func encodePlan(m *Manifest) ([]byte, string, error) {
	d := planDoc{Version: ManifestVersion, Shard: m.Shard, Objects: make([]PlannedObject, len(m.Objects)), Units: make([][4]int64, len(m.Units))}
	for i, o := range m.Objects {
		o.Skipped = ""
		d.Objects[i] = o
	}
	for i, u := range m.Units {
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
	return data, fmt.Sprintf("plan-%d-of-%d-%x.json", m.Shard.Index, m.Shard.Count, sum[:8]), nil
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

// writePlan stores m's plan under its name, if no object has that name yet
// (the same name is the same plan), and records the name in m. It returns
// the name of the plan m named before, "" if none or the same.
func writePlan(ctx context.Context, st StateStore, m *Manifest) (previous string, err error) {
	data, name, err := encodePlan(m)
	if err != nil {
		return "", fmt.Errorf("encode plan of shard %s: %w", m.Shard, err)
	}
	if name == m.Plan {
		return "", nil
	}
	if _, err := st.Write(ctx, name, data, objstore.IfAbsent); err != nil && !errors.Is(err, objstore.ErrPrecondition) {
		return "", fmt.Errorf("store plan: %w", err)
	}
	previous, m.Plan = m.Plan, name
	return previous, nil
}

// loadPlan reads the plan a version 4 manifest names and rebuilds its
// objects and units with their progress; a manifest of an earlier version
// holds them already.
func loadPlan(ctx context.Context, st StateStore, m *Manifest) error {
	if m.Progress == nil {
		return nil
	}
	uri := st.URI(m.Plan)
	data, _, err := st.Read(ctx, m.Plan)
	if err != nil {
		return fmt.Errorf("read the plan of manifest %s: %w", st.URI(ManifestName(m.Shard)), err)
	}
	var d planDoc
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("decode plan %s: %w: %w", uri, ErrBadManifest, err)
	}
	m.Objects = d.Objects
	m.Units = make([]UnitProgress, len(d.Units))
	for i, u := range d.Units {
		if u[0] < 0 || u[1] < 0 || u[2] < 0 {
			return fmt.Errorf("decode plan %s: %w: unit %d is %v", uri, ErrBadManifest, i, u)
		}
		m.Units[i] = UnitProgress{Object: int(u[0]), RowGroup: int(u[1]), Rows: u[2], Retired: u[3] == 1}
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
	return nil
}
