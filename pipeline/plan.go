package pipeline

// Object is one input file as jobs listed it: where it is, the version the
// plan pins (size and version), and the rows of each of its row groups.
type Object struct {
	URI, Key  string
	Size      int64
	Version   string  // objstore.Attrs.Version
	RowGroups []int64 // rows per row group, from the footer; never changed once set, so shared
	// Skipped is the reason jobs set aside an unreadable object
	// (--on-bad-file skip); such an object has no units and is reported.
	// (An object found bad only while a row group is read is set aside by
	// the run itself: see ErrSkipObject.)
	Skipped string
	// Day is the object's partition day (YYYY-MM-DD), "" when its path has
	// none; the ledger keeps it so jobs can list an unfinished object's day.
	Day string
	// Filter, for an object whose path names no day in a run with a date
	// range, says which of its rows and row groups the plan reads; nil
	// reads them all. Its pruned row groups are no units.
	Filter *TimeFilter
}

// Unit is the unit of work, checkpointing and sharding: one row group of one
// object. Object indexes the plan's objects.
type Unit struct {
	Object, RowGroup int
	Rows             int64
}

// BuildPlan lists the units of objects in plan order: objects in the order
// given (jobs sorts them by key), row groups in file order. Skipped objects
// contribute no units, nor do row groups their filter pruned.
func BuildPlan(objects []Object) []Unit {
	n := 0
	for _, o := range objects {
		if o.Skipped == "" {
			n += len(o.RowGroups)
			if o.Filter != nil {
				n -= len(o.Filter.Pruned)
			}
		}
	}
	units := make([]Unit, 0, max(n, 0))
	for i, o := range objects {
		if o.Skipped != "" {
			continue
		}
		for rg, rows := range o.RowGroups {
			if !o.Filter.pruned(rg) {
				units = append(units, Unit{Object: i, RowGroup: rg, Rows: rows})
			}
		}
	}
	return units
}

// PlanRows is the number of rows in units.
func PlanRows(units []Unit) int64 {
	var n int64
	for _, u := range units {
		n += u.Rows
	}
	return n
}
