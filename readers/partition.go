package readers

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// ParsePartition reads what a slash-separated object path says about its day,
// hour, message type and table. It understands Hive-style key=value folders
// (day=, dt=, date= holding YYYY-MM-DD or YYYYMMDD; hr=, hour=; year=, month=,
// day= holding numbers; segment_type=), plain YYYY/MM/DD[/HH] folders and a
// plain YYYY-MM-DD folder. Keys are matched case-insensitively. When a path
// holds several date forms, the one nearest the file wins. The last segment is
// the file name and is never read as a partition.
//
// Table is the nearest folder that is none of the above, lower case:
// "gs://b/dataset/order_completed/000000000000.parquet" gives
// "order_completed", "rudder/ns/tracks/2024/01/02/03/x.parquet" gives "tracks".
func ParsePartition(key string) Partition {
	p := Partition{Hour: -1}
	if _, rest, ok := strings.Cut(key, "://"); ok {
		_, key, _ = strings.Cut(rest, "/") // a URI: the bucket is never a table
	}
	segs := strings.Split(path.Clean("/"+key), "/")[1:]
	if len(segs) == 0 {
		return p
	}
	folders := segs[:len(segs)-1]
	claimed := make([]bool, len(folders)) // partition or date folders: never the table

	// Hive year= and month= wait for a numeric day=; a day= holding a whole
	// date is a day on its own.
	var hy, hm int
	setDay := func(t time.Time) { p.Day, p.HasDay = t, true }

	for i := 0; i < len(folders); i++ {
		s := folders[i]
		if k, v, ok := strings.Cut(s, "="); ok {
			claimed[i] = true
			switch strings.ToLower(k) {
			case "day", "dt", "date":
				if t, ok := parseDate(v); ok {
					setDay(t)
				} else if d, ok := smallInt(v, 1, 31); ok && strings.EqualFold(k, "day") && hy > 0 && hm > 0 {
					if t, ok := validDate(hy, hm, d); ok {
						setDay(t)
					}
				}
			case "hr", "hour":
				if n, ok := smallInt(v, 0, 23); ok {
					p.Hour = n
				}
			case "year":
				if n, ok := smallInt(v, firstYear, lastYear); ok {
					hy = n
				}
			case "month":
				if n, ok := smallInt(v, 1, 12); ok {
					hm = n
				}
			case "segment_type":
				p.SegmentType = strings.Clone(strings.ToLower(v))
			}
			continue
		}
		if t, ok := plainDate(folders[i:]); ok {
			setDay(t)
			claimed[i], claimed[i+1], claimed[i+2] = true, true, true
			i += 2
			if i+1 < len(folders) && len(folders[i+1]) == 2 {
				if h, ok := smallInt(folders[i+1], 0, 23); ok {
					p.Hour = h
					i++
					claimed[i] = true
				}
			}
			continue
		}
		if len(s) == len("2006-01-02") {
			if t, ok := parseDate(s); ok {
				setDay(t)
				claimed[i] = true
			}
		}
	}
	for i := len(folders) - 1; i >= 0; i-- {
		s := folders[i]
		if claimed[i] || s == "" || s == "." || s == ".." {
			continue
		}
		// A copy: a slice of the cleaned path would keep all of it alive
		// for as long as the listing is held (a million objects' worth).
		p.Table = strings.Clone(strings.ToLower(s))
		break
	}
	return p
}

// plainDate recognises YYYY/MM/DD at the start of folders (at least three
// folders, so that the day is a folder and not the file name).
func plainDate(folders []string) (time.Time, bool) {
	if len(folders) < 3 || len(folders[0]) != 4 || len(folders[1]) != 2 || len(folders[2]) != 2 {
		return time.Time{}, false
	}
	y, ok1 := smallInt(folders[0], firstYear, lastYear)
	m, ok2 := smallInt(folders[1], 1, 12)
	d, ok3 := smallInt(folders[2], 1, 31)
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return validDate(y, m, d)
}

// The years a partition's path may name. Outside them a folder is not a
// date: a year 0001 would give the zero time as a day, which a Partition
// with HasDay set never holds.
const firstYear, lastYear = 1900, 2999

// parseDate accepts YYYY-MM-DD and YYYYMMDD of the years partitions name.
func parseDate(s string) (time.Time, bool) {
	layout := "2006-01-02"
	if len(s) == 8 {
		layout = "20060102"
	}
	t, err := time.Parse(layout, s)
	if err != nil || t.Year() < firstYear || t.Year() > lastYear {
		return time.Time{}, false
	}
	return t, true
}

func validDate(y, m, d int) (time.Time, bool) {
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d || int(t.Month()) != m { // 2024-02-31 normalises into March
		return time.Time{}, false
	}
	return t, true
}

// smallInt parses a short run of ASCII digits within [lo, hi].
func smallInt(s string, lo, hi int) (int, bool) {
	if s == "" || len(s) > 4 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, _ := strconv.Atoi(s)
	return n, n >= lo && n <= hi
}

// ParseDay parses a --from/--to value: a date (YYYY-MM-DD), "today" or
// "yesterday", the latter two relative to now's UTC date because Segment's
// partitions are UTC days. The result is UTC midnight.
func ParseDay(s string, now time.Time) (time.Time, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	switch v {
	case "today":
		return today, nil
	case "yesterday":
		return today.AddDate(0, 0, -1), nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse day %q: want YYYY-MM-DD, today or yesterday", s)
	}
	// The years a partition may name: outside them no day is selected,
	// and year 0001's first day is the zero time, which a range reads as
	// no bound at all (--to 0001-01-01 would select every day).
	if t.Year() < firstYear || t.Year() > lastYear {
		return time.Time{}, fmt.Errorf("parse day %q: want YYYY-MM-DD with a year from %d to %d, today or yesterday", s, firstYear, lastYear)
	}
	return t, nil
}

// dayOf is t's calendar date (in t's own location) as UTC midnight.
func dayOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
