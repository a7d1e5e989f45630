package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

func TestMain(m *testing.M) {
	code := objstoretest.Main(m)
	removeBadFixture()
	os.Exit(code)
}

// remoteBackends are the object stores the end-to-end tests run on, each a
// real emulator process reached by the real SDK client: a call returns the
// root of a new bucket.
var remoteBackends = map[string]func(testing.TB) string{
	"gcs":   objstoretest.GCS,
	"azure": objstoretest.Azure,
	"s3":    objstoretest.S3,
}

// readObject reads one object at uri's folder; ok is false when it is absent.
func readObject(t testing.TB, root, key string) (data []byte, ok bool) {
	t.Helper()
	st, err := objstore.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	data, _, err = st.Read(context.Background(), key)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return data, true
}

// listKeys lists root's keys under prefix.
func listKeys(t testing.TB, root, prefix string) []string {
	t.Helper()
	st, err := objstore.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.ListKeys(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestEndToEndMixedRemote runs with the sources in S3 and the state in GCS:
// the manifest and the report land in GCS, nothing but the export is in the
// S3 bucket, and a second run resumes from the GCS state and sends nothing.
func TestEndToEndMixedRemote(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 1500, Seed: 17, Days: 1, RowGroupRows: 100}); err != nil {
		t.Fatal(err)
	}
	export = hoursOf(t, export, 12, 15)
	rows := readOracleRows(t, export)
	want := expectRequests(rows, "acme", "12", testEvents, false)

	sources, states := objstoretest.S3(t), objstoretest.GCS(t)
	objstoretest.PutTree(t, export, sources+"/segment")
	state := states + "/state/nightly"
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(sources+"/segment", state, rec.srv.URL)
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	diffRequests(t, "recorded by the simulator", rec.requests(t), want)
	if err := rep.Check(); err != nil {
		t.Errorf("report: %v", err)
	}
	if c := rep.Counts; c.RowsRead != int64(len(rows)) || c.RequestsAcked != int64(len(want)) {
		t.Errorf("counts %+v: want %d rows read and %d requests acked", c, len(rows), len(want))
	}

	shard := pipeline.Shard{Index: 0, Count: 1}
	m := readManifest(t, state)
	if m.Status != pipeline.StatusFinished || len(m.Objects) == 0 {
		t.Errorf("manifest in GCS: status %s, %d objects; want finished with the plan", m.Status, len(m.Objects))
	}
	for _, obj := range m.Objects {
		if !strings.HasPrefix(obj.URI, sources+"/segment/") {
			t.Errorf("manifest plans %s, want an object of %s/segment", obj.URI, sources)
			break
		}
	}
	data, ok := readObject(t, state, pipeline.ReportName(shard))
	if !ok {
		t.Fatalf("no report in the GCS state %s", state)
	}
	var stored pipeline.Report
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatalf("report in GCS: %v", err)
	}
	if stored.Counts.RequestsAcked != int64(len(want)) {
		t.Errorf("report in GCS counts %d requests acked, want %d", stored.Counts.RequestsAcked, len(want))
	}
	for _, k := range listKeys(t, sources, "") {
		if !strings.HasPrefix(k, "segment/") {
			t.Errorf("the run wrote %s to the sources' bucket", k)
		}
	}
	for _, k := range listKeys(t, states, "") {
		if !strings.HasPrefix(k, "state/nightly/") {
			t.Errorf("the run wrote %s to the state's bucket, outside the state", k)
		}
	}

	// The state in GCS knows the job is done.
	before := rec.sim.Stats().Accepted
	if _, err := Run(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if after := rec.sim.Stats().Accepted; after != before {
		t.Errorf("a finished job run again sent %d requests", after-before)
	}
}

// TestSegmentDataLakesS3 reads a Segment Data Lakes tree as Segment writes
// it to S3, segment-data/data/<source id>/segment_type=<event>/day=/hr=/,
// given only the source's URL: plan types every object, the run delivers
// what the oracle expects, and --from/--to select one day's partitions.
func TestSegmentDataLakesS3(t *testing.T) {
	ctx := context.Background()
	gen := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: gen, Rows: 3000, Seed: 19, Layout: generate.LayoutDatalake, Days: 2, RowGroupRows: 100}); err != nil {
		t.Fatal(err)
	}
	gen = hoursOf(t, gen, 12, 13)
	root := objstoretest.S3(t)
	const sourceID = "9VoQ2dMxVGu8ML4X5bkE1x"
	source := root + "/segment-data/data/" + sourceID
	objstoretest.PutTree(t, dataLakesTree(t, gen), source)

	var plan bytes.Buffer
	env := testEnv(t)
	env.Stdout = &plan
	if err := PrintPlan(ctx, testOptions(source, root+"/state/plan", ""), env); err != nil {
		t.Fatalf("plan: %v", err)
	}
	checkDataLakesPlan(t, plan.String(), sourceID, len(readOracleRows(t, gen)))

	for _, tc := range []struct{ name, from, to, day string }{
		{"all days", "", "", ""},
		{"one day", "2024-01-02", "2024-01-02", "day=2024-01-02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			export := gen
			if tc.day != "" {
				export = filesUnder(t, gen, tc.day)
			}
			rows := readOracleRows(t, export)
			want := expectRequests(rows, "acme", "12", testEvents, false)
			if len(want) < 100 {
				t.Fatalf("the oracle expects only %d requests", len(want))
			}
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			o := testOptions(source, root+"/state/"+strings.ReplaceAll(tc.name, " ", "-"), rec.srv.URL)
			o.From, o.To = tc.from, tc.to
			rep, err := Run(ctx, o, testEnv(t))
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			diffRequests(t, "recorded by the simulator", rec.requests(t), want)
			if c := rep.Counts; c.RowsRead != int64(len(rows)) || c.RequestsAcked != int64(len(want)) {
				t.Errorf("counts %+v: want %d rows read and %d requests acked", c, len(rows), len(want))
			}
		})
	}
}

// checkDataLakesPlan checks plan's output on a Data Lakes tree: every
// object typed by its segment_type= folder or its event column, all rows
// planned, and the source id's folder taken for no table.
func checkDataLakesPlan(t *testing.T, plan, sourceID string, rows int) {
	t.Helper()
	objects := 0
	for _, line := range strings.Split(plan, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && strings.HasPrefix(f[0], "s3://"):
			objects++
			seg := ""
			for _, part := range strings.Split(f[0], "/") {
				if v, ok := strings.CutPrefix(part, "segment_type="); ok {
					seg = v
				}
			}
			want := map[string]string{"identify": "identify", "page": "page"}[seg]
			if want == "" {
				want = "track"
			}
			if f[1] != want {
				t.Errorf("plan types %s as %s, want %s", f[0], f[1], want)
			}
		case len(f) == 4 && f[0] == "total":
			if f[3] != strconv.Itoa(rows) {
				t.Errorf("plan totals %s rows, want %d", f[3], rows)
			}
		case strings.Contains(strings.ToLower(line), strings.ToLower(sourceID)) && !strings.Contains(line, "s3://"):
			t.Errorf("plan takes the source id's folder for a table: %q", line)
		}
	}
	if objects == 0 {
		t.Errorf("plan lists no object:\n%s", plan)
	}
	if t.Failed() {
		t.Logf("plan:\n%s", plan)
	}
}

// dataLakesTree rearranges generate's datalake layout,
// <table>/segment_type=<type>/day=/hr=/, into the tree Segment writes under
// a source's folder: segment_type=<event>/day=/hr=/, a folder for identify,
// for page and for each track event (the rows of the tracks table split by
// their event column), and no folder above them that names a table.
func dataLakesTree(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	put := func(event, rest string, data []byte) error {
		dst := filepath.Join(out, "segment_type="+event, filepath.FromSlash(rest))
		if _, err := os.Stat(dst); err == nil {
			t.Fatalf("two tables write %s", dst)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		table, rest, _ := strings.Cut(filepath.ToSlash(rel), "/")
		_, rest, _ = strings.Cut(rest, "/") // the segment_type= folder
		switch table {
		case "tracks":
			for event, data := range splitByEvent(t, p) {
				if err := put(event, rest, data); err != nil {
					return err
				}
			}
			return nil
		}
		event, ok := map[string]string{"identifies": "identify", "pages": "page"}[table]
		if !ok {
			event = strings.TrimPrefix(table, "track_")
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return put(event, rest, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// splitByEvent rewrites a Parquet file of several track events as one file
// per event, keyed by the event's slug ("Added to Cart" is added_to_cart),
// with the same schema and rows.
func splitByEvent(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	leaf, ok := pf.Schema().Lookup("event")
	if !ok {
		t.Fatalf("%s has no event column", path)
	}
	byEvent := map[string][]parquet.Row{}
	r := parquet.NewReader(bytes.NewReader(data))
	defer r.Close()
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			var event string
			for _, v := range row {
				if v.Column() == leaf.ColumnIndex {
					event = v.String()
				}
			}
			slug := strings.ReplaceAll(strings.ToLower(event), " ", "_")
			byEvent[slug] = append(byEvent[slug], row.Clone())
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out := map[string][]byte{}
	for event, rows := range byEvent {
		var b bytes.Buffer
		w := parquet.NewWriter(&b, pf.Schema(), parquet.Compression(&parquet.Snappy))
		if _, err := w.WriteRows(rows); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out[event] = b.Bytes()
	}
	return out
}

// filesUnder copies the files of dir with a folder named folder on their
// path to a new folder, and returns it.
func filesUnder(t *testing.T, dir, folder string) string {
	t.Helper()
	return copyFiles(t, dir, func(rel []string) bool { return slices.Contains(rel[:len(rel)-1], folder) })
}

// copyFiles copies the files of dir that keep accepts (given their path
// relative to dir, split at each slash) to a new folder, and returns it.
func copyFiles(t *testing.T, dir string, keep func(rel []string) bool) string {
	t.Helper()
	out := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !keep(strings.Split(filepath.ToSlash(rel), "/")) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
