package readers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestCoalesce(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byteRange
		want []byteRange
	}{
		{"touching and overlapping merge", []byteRange{{100, 200}, {0, 100}, {150, 300}},
			[]byteRange{{0, 300}}},
		// 10 MB needed: gaps of up to 500 KB in all may be read.
		{"small gaps merge, smallest first, within 5%", []byteRange{{0, 2_500_000}, {2_600_000, 5_100_000}, {5_400_000, 7_600_000}, {8_000_000, 10_800_000}},
			[]byteRange{{0, 7_600_000}, {8_000_000, 10_800_000}}},
		{"a gap above the budget stays", []byteRange{{0, 1000}, {5000 + minGapBudget, 6000 + minGapBudget}},
			[]byteRange{{0, 1000}, {5000 + minGapBudget, 6000 + minGapBudget}}},
		// 7,000 bytes needed: 4,000 bytes of gap fit in minGapBudget, one more
		// gap that would take it 1 byte over does not.
		{"gaps within minGapBudget merge, whatever the share", []byteRange{{0, 1000}, {5000, 6000}, {6000 + minGapBudget - 3999, 7000 + minGapBudget}},
			[]byteRange{{0, 6000}, {6000 + minGapBudget - 3999, 7000 + minGapBudget}}},
		{"empty ranges dropped", []byteRange{{10, 10}, {20, 5}, {0, 4}},
			[]byteRange{{0, 4}}},
		{"large range split for parallel reads", []byteRange{{4, 4 + 2*maxRangePart + 10}},
			[]byteRange{{4, 4 + maxRangePart}, {4 + maxRangePart, 4 + 2*maxRangePart}, {4 + 2*maxRangePart, 4 + 2*maxRangePart + 10}}},
	} {
		if got := coalesce(c.in); !slices.Equal(got, c.want) {
			t.Errorf("%s: coalesce(%v) = %v, want %v", c.name, c.in, got, c.want)
		}
	}
}

// twoVersions writes two Parquet files of the same size with two row
// groups of 100 rows, whose message ids say their version.
func twoVersions(t *testing.T) (v1, v2 []byte) {
	gen := func(v int) []byte {
		rows := make([][]any, 200)
		for i := range rows {
			rows[i] = []any{fmt.Sprintf("v%d-%06d", v, i), "Signed Up"}
		}
		path := writeParquet(t, t.TempDir(), "x.parquet", []tcol{{"message_id", strNode}, {"event", strNode}}, rows,
			parquet.MaxRowsPerRowGroup(100))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1, v2 = gen(1), gen(2)
	if len(v1) != len(v2) {
		t.Fatalf("versions of %d and %d bytes", len(v1), len(v2))
	}
	return v1, v2
}

// firstVersionDir is a folder holding the first of twoVersions as
// x.parquet.
func firstVersionDir(t *testing.T) string {
	v1, _ := twoVersions(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.parquet"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func collectIDs(got *[]string) func(int64, []segment.Message) error {
	return func(_ int64, batch []segment.Message) error {
		for i := range batch {
			*got = append(*got, string(batch[i].MessageID))
		}
		return nil
	}
}

// A local file rewritten in place after its second row group was
// prefetched: the bytes in memory are of the version opened, but decoding
// them still checks the file, and stops with ErrChanged.
func TestPrefetchedLocalRewrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v1, v2 := twoVersions(t)
	path := filepath.Join(dir, "x.parquet")
	if err := os.WriteFile(path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, dir, SourceOptions{})
	p := openOnlyParquet(t, src, true)
	p.Prefetch(0, 1)
	var got []string
	if err := p.ReadRowGroup(ctx, 0, 0, collectIDs(&got)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	err := p.ReadRowGroup(ctx, 1, 0, collectIDs(&got))
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), path) {
		t.Errorf("prefetched row group after the rewrite: %v, want ErrChanged naming the file", err)
	}
	if len(got) != 100 {
		t.Errorf("%d rows delivered, want the 100 of the first row group", len(got))
	}
}

// In a bucket, opening a listed object again for decoding makes no request
// (the version and size come from the listing, the footer from planning);
// its row group is read in one ranged read; and once the object is
// rewritten, the next read stops with ErrChanged. On every backend.
func TestOpenListedRemote(t *testing.T) {
	for name, bucket := range remoteBackends {
		t.Run(name, func(t *testing.T) { testOpenListedRemote(t, name, bucket(t)) })
	}
}

func testOpenListedRemote(t *testing.T, backend, root string) {
	ctx := context.Background()
	v1, v2 := twoVersions(t)
	st, err := objstore.Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(ctx, "x.parquet", v1, objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, root, SourceOptions{})
	objs, _, err := src.List(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("list: %v %v", objs, err)
	}
	traffic := objstoretest.TrafficOf(backend)
	traffic.Reset()
	plan, err := src.OpenListed(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenParquet(ctx, plan, objs[0], Hint{}); err != nil {
		t.Fatal(err)
	}
	plan.Close()
	// The object is smaller than the first tail read: one read fetched
	// it whole, magic bytes at both ends included.
	if n := traffic.Requests.Load(); n != 1 {
		t.Errorf("planning open: %d requests, want 1", n)
	}

	traffic.Reset()
	f, err := src.OpenListed(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := OpenParquet(ctx, f, objs[0], Hint{})
	if err != nil {
		t.Fatal(err)
	}
	if n := traffic.Requests.Load(); n != 0 {
		t.Errorf("decoding open: %d requests, want none", n)
	}
	var got []string
	if err := p.ReadRowGroup(ctx, 0, 0, collectIDs(&got)); err != nil {
		t.Fatal(err)
	}
	// The footer kept from planning holds the whole small object.
	if n := traffic.Requests.Load(); n != 0 {
		t.Errorf("first row group: %d requests, want none", n)
	}

	// Once the planning footer is dropped, a row group is one ranged read
	// (its two column chunks are neighbours).
	p.Release()
	traffic.Reset()
	if err := p.ReadRowGroup(ctx, 1, 0, collectIDs(&got)); err != nil {
		t.Fatal(err)
	}
	if n := traffic.Requests.Load(); n != 1 {
		t.Errorf("second row group: %d requests, want 1", n)
	}
	if len(got) != 200 {
		t.Fatalf("%d rows, want 200", len(got))
	}

	if _, err := st.Write(ctx, "x.parquet", v2, objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	err = p.ReadRowGroup(ctx, 1, 0, collectIDs(&got))
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), objs[0].URI) {
		t.Errorf("read after rewrite: %v, want ErrChanged naming %s", err, objs[0].URI)
	}
	if len(got) != 0 {
		t.Errorf("%d rows delivered after the rewrite", len(got))
	}
	// Opening from the old listing makes no request, and its first read
	// finds the change.
	f2, err := src.OpenListed(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if _, err := OpenParquet(ctx, f2, objs[0], Hint{}); !errors.Is(err, ErrChanged) {
		t.Errorf("open of the rewritten object from the old listing: %v, want ErrChanged", err)
	}
}

// A row group too large to hold is read as the decoder asks, and decodes
// the same; a prefetch of it is not made.
func TestLargeRowGroupStreams(t *testing.T) {
	ctx := context.Background()
	dir := firstVersionDir(t)
	defer func(n int64) { maxFetchBytes = n }(maxFetchBytes)
	maxFetchBytes = 1
	src := openSource(t, dir, SourceOptions{})
	p := openOnlyParquet(t, src, false)
	p.Release() // no footer bytes in memory: every read goes to the file
	p.Prefetch(0, 1)
	if len(p.fetches) != 0 {
		t.Errorf("%d row groups prefetched, want none", len(p.fetches))
	}
	var got []string
	for g := range 2 {
		if err := p.ReadRowGroup(ctx, g, 0, collectIDs(&got)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 200 {
		t.Fatalf("%d rows, want 200", len(got))
	}
	if got[0] != "v1-000000" || got[199] != "v1-000199" {
		t.Errorf("rows %q ... %q", got[0], got[199])
	}
}

// An idle buffer serves a fetch it holds with at most a quarter to spare;
// smaller ones, and those past the bound of idle bytes, are not kept.
func TestFetchBuffers(t *testing.T) {
	defer func(n int) { minPooled = n }(minPooled)
	minPooled = 100
	p := fetchBuffers{max: 2500}
	same := func(a, b []byte) bool { return &a[:1][0] == &b[:1][0] }
	b := p.get(1000)
	if len(b) != 1000 {
		t.Fatalf("get(1000) has %d bytes", len(b))
	}
	p.put(b)
	if c := p.get(700); same(b, c) {
		t.Error("a buffer of 1000 bytes served a fetch of 700")
	}
	c := p.get(900)
	if !same(b, c) || len(c) != 900 {
		t.Errorf("the idle buffer of 1000 bytes did not serve a fetch of 900 (len %d)", len(c))
	}
	p.put(c)
	p.put(make([]byte, 1200))
	p.put(make([]byte, 400)) // past the bound: 1000 + 1200 + 400 > 2500
	p.put(make([]byte, 50))  // below minPooled
	if p.idle != 2200 || len(p.free) != 2 || cap(p.free[0]) != 1000 || cap(p.free[1]) != 1200 {
		t.Errorf("idle %d bytes in %d buffers, want 2200 in the two of 1000 and 1200", p.idle, len(p.free))
	}
	if d := p.get(1100); cap(d) != 1200 || p.idle != 1000 {
		t.Errorf("get(1100) took a buffer of %d bytes, %d left idle; want the one of 1200, 1000 idle", cap(d), p.idle)
	}
}

// A row group read into the buffer of the one decoded before it decodes
// its own rows: the read overwrites every byte, and the buffer is reused
// only once the row group that had it is decoded (the race detector
// checks that no read of it comes after).
func TestFetchBufferReused(t *testing.T) {
	ctx := context.Background()
	dir := firstVersionDir(t)
	defer func(n int) { minPooled = n }(minPooled)
	minPooled = 1
	b := NewMemoryBudget(MinMemoryBudget, 1)
	src := openSource(t, dir, SourceOptions{MemoryBudget: b})
	p := openOnlyParquet(t, src, false)
	p.Release() // no footer bytes in memory: each row group is fetched
	var got []string
	for g := range 2 {
		if err := p.ReadRowGroup(ctx, g, 0, collectIDs(&got)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 200 || got[0] != "v1-000000" || got[99] != "v1-000099" || got[100] != "v1-000100" || got[199] != "v1-000199" {
		t.Fatalf("%d rows: %q", len(got), got)
	}
	// The second row group's fetch took the first's buffer: one is idle.
	if len(b.bufs.free) != 1 {
		t.Errorf("%d buffers idle after two row groups read one after the other, want 1 (reused)", len(b.bufs.free))
	}
}

// A local source keeps no footer from planning: the decoders read it
// again, one pread, rather than hold it; they decode the same.
func TestLocalSourceKeepsNoFooter(t *testing.T) {
	ctx := context.Background()
	dir := firstVersionDir(t)
	src := openSource(t, dir, SourceOptions{})
	p := openOnlyParquet(t, src, true)
	objs, _, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b := src.footers.get(objs[0].Key, objs[0].Size, objs[0].Version); b != nil {
		t.Errorf("a local source kept %d bytes of footer", len(b))
	}
	var got []string
	for g := range 2 {
		if err := p.ReadRowGroup(ctx, g, 0, collectIDs(&got)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 200 || got[0] != "v1-000000" || got[199] != "v1-000199" {
		t.Errorf("%d rows: %q ... ", len(got), got[:min(len(got), 1)])
	}
}

func TestChunkBufferSize(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{12, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10}, {10_727, 16 << 10},
		{200_000, readBufferSize}, {readBufferSize, readBufferSize}, {1 << 30, readBufferSize},
	} {
		if got := chunkBufferSize(c.size); int64(got) != c.want {
			t.Errorf("chunkBufferSize(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}
