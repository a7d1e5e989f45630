package pipeline

import "slices"

// UnitProgress is what the manifest knows of one unit (one row group of one
// object): every row below Watermark is acknowledged, and so are the rows in
// Above, which is sorted and holds only rows above the watermark. Senders
// finish rows roughly in order, so Above stays short: it holds the rows
// acknowledged while an earlier one was still in flight.
//
// A row is acknowledged once its requests were answered, dead-lettered or
// skipped; on resume IsDone rows are not sent again.
type UnitProgress struct {
	Object    int     `json:"object"`    // index in Manifest.Objects
	RowGroup  int     `json:"row_group"` // index in the object's row groups
	Rows      int64   `json:"rows"`
	Watermark int64   `json:"watermark"`
	Above     []int64 `json:"above,omitempty"`
	Done      bool    `json:"done,omitempty"` // every row acknowledged
	// Retired marks a unit of an earlier version of an object that was set
	// aside as unreadable and has since been replaced: it is never read
	// again, and the rows it marked stay counted. The new version's units
	// follow in the manifest.
	Retired bool `json:"retired,omitempty"`
}

// MarkDone records row as acknowledged. It advances Watermark over the run
// of consecutive acknowledged rows, and otherwise keeps row in Above. Rows
// already recorded and rows outside [0, Rows) are ignored.
//
// An ack at the watermark or past the last row of Above costs amortised
// O(1); one that lands inside Above costs a binary search plus moving the
// rows after it.
func (u *UnitProgress) MarkDone(row int64) {
	if row < u.Watermark || row < 0 || (u.Rows > 0 && row >= u.Rows) {
		return
	}
	if row == u.Watermark {
		u.Watermark++
		i := 0
		for i < len(u.Above) && u.Above[i] == u.Watermark {
			u.Watermark++
			i++
		}
		if i == len(u.Above) {
			u.Above = u.Above[:0] // keep the array for the next out-of-order ack
		} else {
			// Reslice from the front: O(rows drained). append moves the
			// rest to a new array when this one's end is reached, so the
			// memory stays proportional to Above's length.
			u.Above = u.Above[i:]
		}
		u.Done = u.Rows > 0 && u.Watermark >= u.Rows
		return
	}
	if n := len(u.Above); n == 0 || u.Above[n-1] < row {
		u.Above = append(u.Above, row)
		return
	}
	i, found := slices.BinarySearch(u.Above, row)
	if !found {
		u.Above = slices.Insert(u.Above, i, row)
	}
}

// IsDone reports whether row was acknowledged.
func (u *UnitProgress) IsDone(row int64) bool {
	if row < u.Watermark {
		return true
	}
	_, found := slices.BinarySearch(u.Above, row)
	return found
}

// Acked is the number of rows acknowledged.
func (u *UnitProgress) Acked() int64 { return u.Watermark + int64(len(u.Above)) }
