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

	"github.com/convertro-etl/convertro-etl/readers/deltatest"
)

type deltaRow struct {
	MessageID string    `parquet:"message_id"`
	UserID    string    `parquet:"user_id"`
	Event     string    `parquet:"event"`
	Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

func deltaRows(prefix string, n int) []deltaRow {
	rows := make([]deltaRow, n)
	for i := range rows {
		rows[i] = deltaRow{MessageID: fmt.Sprintf("%s-%d", prefix, i), UserID: "u", Event: "Signed Up",
			Timestamp: time.Date(2024, 1, 2, 3, 0, 0, 0, time.UTC)}
	}
	return rows
}

var deltaSchema = deltatest.Schema("message_id", "string", "user_id", "string", "event", "string",
	"timestamp", "timestamp", "event_date", "date")

// deltaHistory writes the table every Delta test starts from, partitioned
// by event_date (a date column of no name the path rules know):
//
//	v0 create; v1 a, b (2024-01-02); v2 c (2024-01-03), checkpoint;
//	v3 OPTIMIZE: a, b out, ab in (dataChange false);
//	v4 DELETE: c out, c2 in (c without its first row).
//
// It returns the add actions by name.
func deltaHistory(t *testing.T, dir string) (*deltatest.Table, map[string]deltatest.Add) {
	tb := deltatest.New(t, dir)
	tb.Create(deltaSchema, []string{"event_date"}, nil)
	d2 := map[string]string{"event_date": "2024-01-02"}
	d3 := map[string]string{"event_date": "2024-01-03"}
	f := map[string]deltatest.Add{
		"a": deltatest.WriteFile(tb, "event_date=2024-01-02/part-00000-a.snappy.parquet", d2, deltaRows("a", 3)),
		"b": deltatest.WriteFile(tb, "event_date=2024-01-02/part 00001 b.snappy.parquet", d2, deltaRows("b", 2)),
		// A file whose path says nothing of its day: the log does.
		"c": deltatest.WriteFile(tb, "c/part-00000-c.snappy.parquet", d3, deltaRows("c", 4)),
	}
	tb.Commit("WRITE", deltatest.AddAction(f["a"]), deltatest.AddAction(f["b"]))
	tb.Commit("WRITE", deltatest.AddAction(f["c"]))
	tb.Checkpoint()
	f["ab"] = deltatest.WriteFile(tb, "event_date=2024-01-02/part-00000-ab.snappy.parquet", d2,
		append(deltaRows("a", 3), deltaRows("b", 2)...))
	f["ab"] = withDataChange(f["ab"], false)
	// The remove of b names it unencoded, as some writers do: the same file.
	removeB := deltatest.RemoveAction(f["b"], false)
	removeB.Remove.Path = "event_date=2024-01-02/part 00001 b.snappy.parquet"
	tb.Commit("OPTIMIZE", deltatest.RemoveAction(f["a"], false), removeB, deltatest.AddAction(f["ab"]))
	f["c2"] = deltatest.WriteFile(tb, "c/part-00000-c2.snappy.parquet", d3, deltaRows("c", 4)[1:])
	tb.Commit("DELETE", deltatest.RemoveAction(f["c"], true), deltatest.AddAction(f["c2"]))
	return tb, f
}

func withDataChange(a deltatest.Add, dc bool) deltatest.Add { a.DataChange = dc; return a }

func scanDelta(t *testing.T, src string, o SourceOptions) (Listing, error) {
	t.Helper()
	s, err := OpenSource(context.Background(), src, o)
	if err != nil {
		t.Fatal(err)
	}
	return s.Scan(context.Background())
}

func objectKeys(l Listing) []string {
	var keys []string
	for _, o := range l.Objects {
		keys = append(keys, o.Key)
	}
	return keys
}

// TestDeltaLiveFiles: a folder holding _delta_log/ lists the files of the
// table's latest version, from the checkpoint and the commits after it,
// with the partition day from the log; the files OPTIMIZE and DELETE
// removed are skipped with the reason. An earlier version reads its own
// files.
func TestDeltaLiveFiles(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "tracks")
	deltaHistory(t, src)
	// Cleaned-up log: the state before the checkpoint is only in it.
	for _, v := range []int{0, 1} {
		if err := os.Remove(filepath.Join(src, "_delta_log", fmt.Sprintf("%020d.json", v))); err != nil {
			t.Fatal(err)
		}
	}
	l, err := scanDelta(t, src, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"c/part-00000-c2.snappy.parquet", "event_date=2024-01-02/part-00000-ab.snappy.parquet"}
	if got := objectKeys(l); !slices.Equal(got, want) {
		t.Errorf("objects %q, want %q", got, want)
	}
	days := map[string]string{}
	for _, o := range l.Objects {
		days[o.Key] = o.Partition.Day.Format(time.DateOnly)
		if !o.Partition.HasDay || o.Partition.Table != "tracks" {
			t.Errorf("%s: partition %+v, want a day and table tracks", o.Key, o.Partition)
		}
	}
	if days[want[0]] != "2024-01-03" || days[want[1]] != "2024-01-02" {
		t.Errorf("days %v: want them from the log", days)
	}
	if len(l.Tables) != 1 || l.Tables[0].Version != 4 || l.Tables[0].URI != src {
		t.Errorf("tables %+v, want %s at version 4", l.Tables, src)
	}
	removed := 0
	for _, s := range l.Skipped {
		if s.Reason == SkipNotInTable {
			removed++
		}
	}
	if removed != 3 {
		t.Errorf("%d files skipped as not in the table, want 3 (a, b, c): %+v", removed, l.Skipped)
	}

	// Version 3: the checkpoint and one commit.
	l, err = scanDelta(t, src, SourceOptions{TableVersions: map[string]int64{src: 3}})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"c/part-00000-c.snappy.parquet", "event_date=2024-01-02/part-00000-ab.snappy.parquet"}
	if got := objectKeys(l); !slices.Equal(got, want) || l.Tables[0].Version != 3 {
		t.Errorf("version 3: objects %q (tables %+v), want %q", got, l.Tables, want)
	}
	// Version 2 is the checkpoint alone; the URL-encoded name is decoded.
	l, err = scanDelta(t, src, SourceOptions{TableVersions: map[string]int64{src: 2}})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"c/part-00000-c.snappy.parquet", "event_date=2024-01-02/part 00001 b.snappy.parquet",
		"event_date=2024-01-02/part-00000-a.snappy.parquet"}
	if got := objectKeys(l); !slices.Equal(got, want) {
		t.Errorf("version 2: objects %q, want %q", got, want)
	}
	// Version 1 needs commits the cleanup removed.
	if _, err = scanDelta(t, src, SourceOptions{TableVersions: map[string]int64{src: 1}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("version 1 after cleanup: err = %v, want ErrNotFound", err)
	}
	// A version past the log's end.
	if _, err = scanDelta(t, src, SourceOptions{TableVersions: map[string]int64{src: 9}}); !errors.Is(err, ErrChanged) {
		t.Errorf("version 9: err = %v, want ErrChanged", err)
	}
}

// TestDeltaDateRangeAndNestedTables: a folder of tables, one a Delta table
// and one plain; the date range applies to the Delta files by the day in
// the log, and the plain folder is read as before.
func TestDeltaDateRangeAndNestedTables(t *testing.T) {
	root := t.TempDir()
	deltaHistory(t, filepath.Join(root, "tracks"))
	if err := os.MkdirAll(filepath.Join(root, "identifies", "2024-01-03"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeGen(t, filepath.Join(root, "identifies", "2024-01-03"), "x.parquet", 5)
	l, err := scanDelta(t, root, SourceOptions{From: time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"identifies/2024-01-03/x.parquet", "tracks/c/part-00000-c2.snappy.parquet"}
	if got := objectKeys(l); !slices.Equal(got, want) || l.OutOfRange != 1 {
		t.Errorf("objects %q (out of range %d), want %q and 1 out of range", got, l.OutOfRange, want)
	}
	if len(l.Tables) != 1 || l.Tables[0].URI != filepath.Join(root, "tracks") {
		t.Errorf("tables %+v", l.Tables)
	}
}

// TestDeltaMultiPartCheckpoint: a checkpoint in parts is read whole.
func TestDeltaMultiPartCheckpoint(t *testing.T) {
	src := t.TempDir()
	tb := deltatest.New(t, src)
	tb.Create(deltaSchema, nil, nil)
	var want []string
	for i := range 5 {
		rel := fmt.Sprintf("part-%05d.parquet", i)
		tb.Commit("WRITE", deltatest.AddAction(deltatest.WriteFile(tb, rel, nil, deltaRows(rel, 1))))
		want = append(want, rel)
	}
	tb.CheckpointParts(3)
	for v := range tb.Version() + 1 {
		os.Remove(filepath.Join(src, "_delta_log", fmt.Sprintf("%020d.json", v)))
	}
	l, err := scanDelta(t, src, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := objectKeys(l); !slices.Equal(got, want) {
		t.Errorf("objects %q, want %q", got, want)
	}
	// A part missing: not a checkpoint, and nothing else holds the state.
	os.Remove(filepath.Join(src, "_delta_log", fmt.Sprintf("%020d.checkpoint.%010d.%010d.parquet", 5, 2, 3)))
	if _, err := scanDelta(t, src, SourceOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("checkpoint part missing: err = %v, want ErrNotFound", err)
	}
}

// TestDeltaRefusals: what cannot be read correctly is refused, naming why.
func TestDeltaRefusals(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		kind  error
		says  string
	}{
		{"deletion vector", func(t *testing.T, dir string) {
			tb, f := deltaHistory(t, dir)
			dv := f["c2"]
			dv.DeletionVector = &deltatest.DeletionVector{StorageType: "u", PathOrInlineDv: "ab^-aqEH.-t@S}K{vb[*k^", SizeInBytes: 34, Cardinality: 1}
			tb.Commit("DELETE", deltatest.RemoveAction(f["c2"], true), deltatest.AddAction(dv))
		}, ErrUnsupported, "deletion vector"},
		{"deletion vector in a checkpoint", func(t *testing.T, dir string) {
			tb, f := deltaHistory(t, dir)
			dv := f["c2"]
			dv.DeletionVector = &deltatest.DeletionVector{StorageType: "u", PathOrInlineDv: "ab^-aqEH.-t@S}K{vb[*k^", SizeInBytes: 34, Cardinality: 1}
			tb.Commit("DELETE", deltatest.RemoveAction(f["c2"], true), deltatest.AddAction(dv))
			tb.Checkpoint()
			os.Remove(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", tb.Version())))
		}, ErrUnsupported, "deletion vector"},
		{"column mapping", func(t *testing.T, dir string) {
			tb := deltatest.New(t, dir)
			tb.Create(deltaSchema, nil, map[string]string{"delta.columnMapping.mode": "name"})
			tb.Commit("WRITE", deltatest.AddAction(deltatest.WriteFile(tb, "x.parquet", nil, deltaRows("x", 1))))
		}, ErrUnsupported, "column mapping"},
		{"unknown reader feature", func(t *testing.T, dir string) {
			tb := deltatest.New(t, dir)
			tb.Create(deltaSchema, nil, nil)
			tb.Commit("UPGRADE", deltatest.Action{Protocol: &deltatest.Protocol{MinReaderVersion: 3, MinWriterVersion: 7,
				ReaderFeatures: []string{"deletionVectors", "someFutureFeature"}}})
		}, ErrUnsupported, "someFutureFeature"},
		{"mapped partition column", func(t *testing.T, dir string) {
			tb := deltatest.New(t, dir)
			tb.Create(deltaSchema, []string{"event"}, nil)
			tb.Commit("WRITE", deltatest.AddAction(deltatest.WriteFile(tb, "event=x/x.parquet", map[string]string{"event": "x"}, deltaRows("x", 1))))
		}, ErrUnsupported, `partition column "event"`},
		{"v2 checkpoint", func(t *testing.T, dir string) {
			tb, _ := deltaHistory(t, dir)
			tb.WriteLog(fmt.Sprintf("%020d.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json", tb.Version()), []byte(`{"checkpointMetadata":{"version":4}}`))
			for v := range tb.Version() + 1 {
				os.Remove(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.json", v)))
			}
			os.Remove(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.checkpoint.parquet", 2)))
		}, ErrUnsupported, "v2"},
		{"vacuumed file", func(t *testing.T, dir string) {
			_, f := deltaHistory(t, dir)
			os.Remove(filepath.Join(dir, filepath.FromSlash(f["c2"].Path)))
		}, ErrNotFound, "VACUUM"},
		{"iceberg", func(t *testing.T, dir string) {
			for _, d := range []string{"data", "metadata"} {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeGen(t, filepath.Join(dir, "data"), "00000-0-x.parquet", 3)
			os.WriteFile(filepath.Join(dir, "metadata", "v1.metadata.json"), []byte(`{"format-version":2}`), 0o644)
		}, ErrUnsupported, "Iceberg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tracks")
			c.setup(t, dir)
			_, err := scanDelta(t, dir, SourceOptions{})
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("err = %v, want %v saying %q", err, c.kind, c.says)
			}
		})
	}
}

// TestDeltaCarriedSince: given the version a job last read and the files it
// delivered, a file an OPTIMIZE since then compacted from delivered files
// is Carried; one compacted from a file not delivered is not; a DELETE
// that rewrote a delivered file counts in Rewritten, and its new file is
// read.
func TestDeltaCarriedSince(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tracks")
	deltaHistory(t, src)
	uri := func(name string) string { return filepath.Join(src, filepath.FromSlash(name)) }
	cases := []struct {
		delivered []string
		carried   []string
		rewritten int
	}{
		{[]string{"event_date=2024-01-02/part-00000-a.snappy.parquet", "event_date=2024-01-02/part 00001 b.snappy.parquet", "c/part-00000-c.snappy.parquet"},
			[]string{"event_date=2024-01-02/part-00000-ab.snappy.parquet"}, 1},
		{[]string{"event_date=2024-01-02/part-00000-a.snappy.parquet"}, nil, 0},
	}
	for _, c := range cases {
		done := map[string]bool{}
		for _, k := range c.delivered {
			done[uri(k)] = true
		}
		l, err := scanDelta(t, src, SourceOptions{Since: map[string]int64{src: 2}, Delivered: func(u string) bool { return done[u] }})
		if err != nil {
			t.Fatal(err)
		}
		var carried []string
		for _, o := range l.Objects {
			if o.Carried {
				carried = append(carried, o.Key)
			}
		}
		if !slices.Equal(carried, c.carried) || l.Rewritten != c.rewritten {
			t.Errorf("delivered %q: carried %q, rewritten %d; want %q, %d", c.delivered, carried, l.Rewritten, c.carried, c.rewritten)
		}
	}
}

// BenchmarkDeltaScan lists a table of 2,000 live files whose state is in a
// checkpoint and 20 commits after it (each replacing 10 files), on local
// disk: the cost of reading the log over that of listing the folder.
func BenchmarkDeltaScan(b *testing.B) {
	src := b.TempDir()
	tb := deltatest.New(b, src)
	tb.Create(deltaSchema, []string{"event_date"}, nil)
	d := map[string]string{"event_date": "2024-01-02"}
	one := deltaRows("x", 1)
	var adds []deltatest.Action
	var files []deltatest.Add
	for i := range 2000 {
		f := deltatest.WriteFile(tb, fmt.Sprintf("event_date=2024-01-02/part-%05d.parquet", i), d, one)
		files = append(files, f)
		adds = append(adds, deltatest.AddAction(f))
	}
	tb.Commit("WRITE", adds...)
	tb.Checkpoint()
	for c := range 20 {
		var acts []deltatest.Action
		for i := range 10 {
			acts = append(acts, deltatest.RemoveAction(files[c*10+i], true))
			acts = append(acts, deltatest.AddAction(deltatest.WriteFile(tb, fmt.Sprintf("event_date=2024-01-02/part-r%02d-%d.parquet", c, i), d, one)))
		}
		tb.Commit("MERGE", acts...)
	}
	for b.Loop() {
		s, err := OpenSource(context.Background(), src, SourceOptions{})
		if err != nil {
			b.Fatal(err)
		}
		l, err := s.Scan(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(l.Objects) != 2000 {
			b.Fatalf("%d objects", len(l.Objects))
		}
	}
}
