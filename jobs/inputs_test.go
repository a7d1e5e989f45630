package jobs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// TestEventTableOf: the event table an object belongs to, by the layouts'
// paths; a Segment Data Lakes source id's folder is no table.
func TestEventTableOf(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"dataset/order_completed/day=2024-01-01/hr=00/000000000000.parquet", "order_completed"},
		{"dataset/tracks/day=2024-01-01/hr=00/000000000000.parquet", ""},
		{"dataset/identifies/day=2024-01-01/hr=00/000000000000.parquet", ""},
		{"lake/track_order_completed/segment_type=track/day=2024-01-01/hr=00/part-00000.parquet", "order_completed"},
		{"lake/tracks/segment_type=track/day=2024-01-01/hr=00/part-00000.parquet", ""},
		{"segment-data/data/9VoQ2dMxVGu8ML4X5bkE1x/segment_type=order_completed/day=2024-01-01/hr=00/part-00000.parquet", "order_completed"},
		{"segment-data/data/9VoQ2dMxVGu8ML4X5bkE1x/segment_type=identify/day=2024-01-01/hr=00/part-00000.parquet", ""},
		{"segment-data/data/9VoQ2dMxVGu8ML4X5bkE1x/segment_type=page/day=2024-01-01/hr=00/part-00000.parquet", ""},
	} {
		if got := eventTableOf(readers.ParsePartition(tt.key)); got != tt.want {
			t.Errorf("eventTableOf(%s) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

// TestPackNamesKeepsEveryName: packing changes where the listing's names
// live, never what they say, and the block's names share one allocation.
func TestPackNamesKeepsEveryName(t *testing.T) {
	refs := []inputRef{
		{name: "p/a.parquet" + "17", keyLen: 11},
		{name: "p/b.parquet", keyLen: 11}, // no version
		{name: "", keyLen: 0},
		{name: "v", keyLen: 0},
	}
	want := slices.Clone(refs)
	size := 0
	for _, r := range refs {
		size += len(r.name)
	}
	packNames(refs)
	first := unsafe.StringData(refs[0].name)
	end := unsafe.Add(unsafe.Pointer(first), size)
	for i, r := range refs {
		if r.wholeKey() != want[i].wholeKey() || r.version() != want[i].version() {
			t.Errorf("object %d: packed as %q/%q, want %q/%q", i, r.wholeKey(), r.version(), want[i].wholeKey(), want[i].version())
		}
		if p := unsafe.Pointer(unsafe.StringData(r.name)); r.name != "" && (uintptr(p) < uintptr(unsafe.Pointer(first)) || uintptr(p) >= uintptr(end)) {
			t.Errorf("object %d: %q is not in the block", i, r.name)
		}
	}
}

// TestCompareJoined: comparing two strings each given in two parts is
// comparing them joined, wherever the parts split them.
func TestCompareJoined(t *testing.T) {
	words := []string{"", "a", "b", "ab", "ba", "aa", "abc", "b/", "/", "a/b", "gs://b/", "gs://b/x"}
	for _, a1 := range words {
		for _, a2 := range words {
			for _, b1 := range words {
				for _, b2 := range words {
					want := strings.Compare(a1+a2, b1+b2)
					if got := compareJoined(a1, a2, b1, b2); got != want {
						t.Fatalf("compareJoined(%q, %q, %q, %q) = %d, want %d", a1, a2, b1, b2, got, want)
					}
				}
			}
		}
	}
}

// TestRecordMakesTheListedEntry: a plan entry made from a record has the
// URI, key and version the listing gave, whether the key ends the URI
// (its source's root is shared), or not (the URI is kept whole).
func TestRecordMakesTheListedEntry(t *testing.T) {
	root := &origin{root: "gs://b/p/"}
	for _, tt := range []struct {
		r             inputRef
		uri, key, ver string
	}{
		{inputRef{from: root, name: "a.parquet17", keyLen: 9}, "gs://b/p/a.parquet", "a.parquet", "17"},
		{inputRef{from: &origin{uri: "/x/empty.parquet"}, name: "/x/empty.parquet", keyLen: 16}, "/x/empty.parquet", "/x/empty.parquet", ""},
		{inputRef{from: &origin{uri: "/x/y/../z.parquet"}, name: "z.parquet9", keyLen: 9}, "/x/y/../z.parquet", "z.parquet", "9"},
	} {
		in := &inputs{refs: []inputRef{tt.r}, ready: make([]atomic.Bool, 1), days: map[time.Time]string{}}
		tt.r.scope = &readers.Partition{}
		in.refs[0].scope = tt.r.scope
		o := in.object(0)
		if o.URI != tt.uri || o.Key != tt.key || o.Version != tt.ver {
			t.Errorf("entry %+v, want URI %q, key %q, version %q", o, tt.uri, tt.key, tt.ver)
		}
		if i, ok := in.find(tt.uri); !ok || i != 0 {
			t.Errorf("find(%q) = %d, %v", tt.uri, i, ok)
		}
	}
}

// TestFrontCodeKeepsEveryKey: once a listing's keys are held as what each
// shares with the one before and the rest, every object still has its key,
// URI and version, is found by its URI (in URI order, and in a kind's
// order through byURI), and a URI not listed is not found; the names take
// fewer bytes.
func TestFrontCodeKeepsEveryKey(t *testing.T) {
	a, b := &origin{root: "gs://a/x/"}, &origin{root: "gs://b/"}
	var uris []string
	var refs []inputRef
	add := func(from *origin, key, version string) {
		r := inputRef{from: from, name: key + version, keyLen: uint16(len(key)), scope: &readers.Partition{}}
		refs = append(refs, r)
		u1, u2 := r.wholeURIParts()
		uris = append(uris, u1+u2)
	}
	for d := range 3 {
		for h := range 24 {
			add(a, fmt.Sprintf("tracks/day=2024-01-0%d/hr=%02d/000000000000.parquet", d+1, h), fmt.Sprint(1700000000000000000+h))
		}
	}
	add(a, "tracks/z", "")    // shares little with the key before
	add(a, "tracks/z/y", "7") // all of it
	add(&origin{uri: "/elsewhere/empty.parquet"}, "/elsewhere/empty.parquet", "")
	add(b, "a", "1")
	add(b, "ab", "2")
	slices.SortFunc(refs, func(x, y inputRef) int { return compareURI(&x, &y) })
	slices.Sort(uris)
	want := slices.Clone(refs)
	before := 0
	for _, r := range refs {
		before += len(r.name)
	}
	for _, kindOrder := range []bool{false, true} {
		refs := slices.Clone(want)
		in := &inputs{refs: refs, ready: make([]atomic.Bool, len(refs)), days: map[time.Time]string{}}
		if kindOrder {
			// Reversed, as a kind's order may put them: byURI keeps URI order.
			slices.Reverse(in.refs)
			for i := range in.refs {
				in.byURI = append(in.byURI, int32(len(in.refs)-1-i))
			}
		}
		frontCode(in.refs)
		after := 0
		for i := range in.refs {
			after += len(in.refs[i].name)
		}
		if after >= before*2/3 {
			t.Errorf("kind order %v: names of %d bytes after, %d before", kindOrder, after, before)
		}
		for i := range in.refs {
			w := want[i]
			if kindOrder {
				w = want[len(want)-1-i]
			}
			u1, u2 := w.wholeURIParts()
			o := in.object(i)
			if o.URI != u1+u2 || o.Key != w.wholeKey() || o.Version != w.version() || in.key(i) != w.wholeKey() {
				t.Errorf("kind order %v, object %d: %q %q %q, want %q %q %q", kindOrder, i, o.URI, o.Key, o.Version, u1+u2, w.wholeKey(), w.version())
			}
			if j, ok := in.find(o.URI); !ok || j != i {
				t.Errorf("kind order %v: find(%q) = %d, %v, want %d", kindOrder, o.URI, j, ok, i)
			}
		}
		// Made for a segment, the entries say the same.
		idx := make([]int, len(in.refs))
		for i := range idx {
			idx[i] = i
		}
		for i, e := range in.entries(idx) {
			if o := in.object(i); e.URI != o.URI || e.Key != o.Key || e.Version != o.Version {
				t.Errorf("kind order %v, object %d: entry %q %q %q, object %q %q %q", kindOrder, i, e.URI, e.Key, e.Version, o.URI, o.Key, o.Version)
			}
		}
		for _, u := range append([]string{"", "gs://", "gs://a/x/tracks/day=2024-01-01/hr=00", "gs://a/x/tracks/z/", "gs://b/aa", "gs://c"}, uris[0]+"0") {
			if j, ok := in.find(u); ok {
				t.Errorf("kind order %v: find(%q) found object %d, %s", kindOrder, u, j, in.uri(j))
			}
		}
	}
}

// TestNameOfKeepsTheVersion: a version that is a decimal number is held
// as its 8 bytes and given back as it was listed; any other, as listed.
func TestNameOfKeepsTheVersion(t *testing.T) {
	for _, tt := range []struct {
		version string
		num     bool
	}{
		{"1733000000123456789", true}, {"0", true}, {"17", true}, {"18446744073709551615", true},
		{"18446744073709551616", false}, {"007", false}, {"", false}, {"-1", false}, {"+1", false},
		{`"9b2cf535f27731c974343645a3985328"`, false}, {"0x8DCB", false},
	} {
		name, num := nameOf("a/b.parquet", tt.version)
		r := inputRef{name: name, keyLen: uint16(len("a/b.parquet")), numVersion: num}
		if num != tt.num || r.wholeKey() != "a/b.parquet" || r.version() != tt.version {
			t.Errorf("version %q: held as a number %v, given back as %q (key %q)", tt.version, num, r.version(), r.wholeKey())
		}
		if num && len(name) != len("a/b.parquet")+8 {
			t.Errorf("version %q: a name of %d bytes", tt.version, len(name))
		}
	}
}

// TestRowSlabHandsOutFullSlices: each object's row groups are a slice
// full to its capacity, so that appending to one never writes into the
// next object's; a large one gets its own.
func TestRowSlabHandsOutFullSlices(t *testing.T) {
	var s rowSlab
	a, b := s.take(3), s.take(2)
	copy(b, []int64{7, 8})
	a = append(a, 99)
	if b[0] != 7 || b[1] != 8 {
		t.Errorf("appending to one object's row groups changed the next one's: %v", b)
	}
	if len(a) != 4 || s.take(0) != nil {
		t.Errorf("take: got %v and a non-nil empty slice", a)
	}
	if big := s.take(rowSlabBlock); len(big) != rowSlabBlock || cap(big) != rowSlabBlock {
		t.Errorf("take(%d): len %d cap %d", rowSlabBlock, len(big), cap(big))
	}
	for range 2 * rowSlabBlock / 100 { // across blocks: each slice is whole
		if r := s.take(100); len(r) != 100 || cap(r) != 100 {
			t.Fatalf("take(100): len %d cap %d", len(r), cap(r))
		}
	}
}

// TestHandOutHandsThePlan: a plan read whole before the run (a dry run's)
// is handed to the run in small segments, in plan order, every object
// once, and the rows it announces (plannedRows) are those of its units:
// an object set aside as bad counts none.
func TestHandOutHandsThePlan(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 6_000, Seed: 5, Days: 3, Layout: generate.LayoutWarehouse}); err != nil {
		t.Fatal(err)
	}
	var bad string
	err := filepath.WalkDir(export, func(p string, d fs.DirEntry, err error) error {
		if err == nil && bad == "" && strings.HasSuffix(p, ".parquet") {
			bad = p
		}
		return err
	})
	if err != nil || bad == "" {
		t.Fatalf("no Parquet file in the export: %v", err)
	}
	if err := os.WriteFile(bad, []byte("not a Parquet file"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := testOptions(export, "", "").withDefaults()
	o.OnBadFile = "skip"
	in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	all := in.all()
	if len(in.known()) != 0 || in.planner() == nil {
		t.Fatalf("a plan read whole: %d objects known at the start, planner %v; want none, and a planner", len(in.known()), in.planner() != nil)
	}
	var handed []pipeline.Object
	err = in.planner()(ctx, func(objs []pipeline.Object) error {
		if len(objs) == 0 || len(objs) > handOutSegment {
			t.Errorf("a segment of %d objects, want 1 to %d", len(objs), handOutSegment)
		}
		handed = append(handed, objs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) <= handOutSegment || len(handed) != len(all) {
		t.Fatalf("%d objects handed of %d: want every one, in more than one segment", len(handed), len(all))
	}
	skipped := 0
	for i := range all {
		if handed[i].URI != all[i].URI || handed[i].Version != all[i].Version || !slices.Equal(handed[i].RowGroups, all[i].RowGroups) {
			t.Fatalf("object %d handed as %+v, want %+v", i, handed[i], all[i])
		}
		if handed[i].Skipped != "" {
			skipped++
			if handed[i].URI != bad {
				t.Errorf("%s set aside, want only %s", handed[i].URI, bad)
			}
		}
	}
	if skipped != 1 {
		t.Errorf("%d objects set aside, want 1", skipped)
	}
	if got, want := in.plannedRows(), pipeline.PlanRows(pipeline.BuildPlan(all)); got != want || want == 0 {
		t.Errorf("plannedRows = %d, want the plan's %d", got, want)
	}
}
