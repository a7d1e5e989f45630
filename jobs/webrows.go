package jobs

import (
	"fmt"
	"io"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/readers"
)

// Web rows: analytics.js, Segment's browser library, sets no
// context.device.id, and Convertro needs a device id for every call (rule
// 3), so a warehouse of web events would send almost nothing and say only
// "missing_device_id". Such rows are skipped under a reason of their own,
// and the report and the plan count them and name the option that sends
// them with their anonymous_id as the device id. The option is off by
// default: the anonymous_id is not the visitor id Convertro's own browser
// tag sets, so what it sends is not joined to the visits that tag records.

// webRowsFix is what sends the rows skipped for want of a device id that
// have an anonymous_id, and at what cost; webRowsHint is what the report
// says of them.
var (
	webRowsFix = fmt.Sprintf("--%s (job file: %s: true) sends them with the anonymous_id as the device id (sid), "+
		"which will not match the visitor id Convertro's own browser tag sets",
		flagAnonymousIDAsDeviceID, keyAnonymousIDAsDeviceID)
	webRowsHint = "they have an anonymous_id but no context_device_id (web rows); " + webRowsFix
)

// skipHints are the pipeline's Config.SkipHints of every backfill and
// migration.
var skipHints = map[string]string{
	convertro.SkipMissingDeviceIDHasAnonymousID.String(): webRowsHint,
}

// webRows bounds the rows of an object, or of a listing, that have an
// anonymous_id and no device id, as the footers' statistics tell them: at
// least lo and at most hi. They are equal whenever the statistics say
// exactly (a web export without a device id column, a mobile one where
// every row has one); a bound is loose only where both columns are partly
// NULL, or a writer left its statistics out.
type webRows struct{ lo, hi int64 }

func (w *webRows) add(o webRows) { w.lo += o.lo; w.hi += o.hi }

// footerWebRows reads the bounds of an opened file's rows from its footer.
// Rows of files whose type is never sent (pages, screens, groups, aliases)
// do not count; in an identify file, rows without user_id are skipped as
// missing_user_id first, so they leave the lower bound.
func footerWebRows(pf *readers.ParquetFile) webRows {
	var w webRows
	switch pf.Type() {
	case segment.TypeIdentify, segment.TypeTrack, segment.TypeUnknown: // TypeUnknown: rows carry their own
	default:
		return w
	}
	span := func(i int, field string, rows int64) (lo, hi int64) {
		if n, ok := pf.FieldNulls(i, field); ok {
			return n, n
		}
		return 0, rows
	}
	for i, g := range pf.RowGroups() {
		rows := g.Rows
		noDevLo, noDevHi := span(i, "context_device_id", rows)
		anonNullLo, anonNullHi := span(i, "anonymous_id", rows)
		hasAnonLo, hasAnonHi := rows-anonNullHi, rows-anonNullLo
		lo := max(0, noDevLo+hasAnonLo-rows)
		hi := min(noDevHi, hasAnonHi)
		if pf.Type() == segment.TypeIdentify {
			_, noUserHi := span(i, "user_id", rows)
			lo = max(0, lo-noUserHi)
		}
		if pf.Type() == segment.TypeUnknown {
			lo = 0 // some rows may be pages
		}
		w.add(webRows{lo, hi})
	}
	return w
}

// printWebRows adds to plan what the listing's web rows will do.
func printWebRows(w io.Writer, rows webRows, on bool) {
	if rows.hi == 0 {
		return
	}
	n := fmt.Sprintf("%d rows", rows.hi)
	switch {
	case rows.lo == 0 && rows.hi > 0:
		n = fmt.Sprintf("up to %d rows", rows.hi)
	case rows.lo != rows.hi:
		n = fmt.Sprintf("between %d and %d rows", rows.lo, rows.hi)
	}
	if on {
		fmt.Fprintf(w, "\nweb rows: %s have an anonymous_id but no context_device_id (from the footers' statistics); "+
			"--%s sends them with the anonymous_id as the device id (sid)\n", n, flagAnonymousIDAsDeviceID)
		return
	}
	fmt.Fprintf(w, "\nweb rows: %s have an anonymous_id but no context_device_id (from the footers' statistics) "+
		"and will be skipped as %s; %s\n", n, convertro.SkipMissingDeviceIDHasAnonymousID, webRowsFix)
}
