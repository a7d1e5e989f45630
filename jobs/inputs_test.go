package jobs

import (
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/convertro-etl/convertro-etl/readers"
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

// TestPackListedKeepsEveryString: packing changes where the listing's
// strings live, never what they say; a key that ends its URI still shares
// the URI's bytes, and the block's strings share one allocation.
func TestPackListedKeepsEveryString(t *testing.T) {
	objs := []listedObject{
		{uri: "gs://b/p/a.parquet", key: "p/a.parquet", version: "17"},
		{uri: "gs://b/p/b.parquet", key: "other/b.parquet", version: ""}, // a key that is not the URI's end
		{uri: "file:///x/empty.parquet", key: "file:///x/empty.parquet"}, // a set-aside empty object: key = URI
		{uri: "", key: "", version: "v"},
	}
	want := slices.Clone(objs)
	size := 0 // the block's: each URI and version, and the key not in its URI
	for _, o := range objs {
		size += len(o.uri) + len(o.version)
		if !strings.HasSuffix(o.uri, o.key) {
			size += len(o.key)
		}
	}
	packListed(objs)
	first := unsafe.StringData(objs[0].uri)
	end := unsafe.Add(unsafe.Pointer(first), size)
	for i, o := range objs {
		if o.uri != want[i].uri || o.key != want[i].key || o.version != want[i].version {
			t.Errorf("object %d: packed as %+v, want %+v", i, o, want[i])
		}
		for _, s := range []string{o.uri, o.key, o.version} {
			if p := unsafe.Pointer(unsafe.StringData(s)); s != "" && (uintptr(p) < uintptr(unsafe.Pointer(first)) || uintptr(p) >= uintptr(end)) {
				t.Errorf("object %d: %q is not in the block", i, s)
			}
		}
	}
	if k, u := objs[0].key, objs[0].uri; unsafe.StringData(k) != unsafe.StringData(u[len(u)-len(k):]) {
		t.Errorf("the key of %s does not share its URI's bytes", u)
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
