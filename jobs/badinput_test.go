package jobs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// The bad-input campaign: each broken input next to two healthy files, run
// with --on-bad-file fail and skip, then fixed and run again.

const (
	healthyTracks     = "tracks/day=2024-01-01/hr=12/000000000000.parquet"
	healthyIdentifies = "identifies/day=2024-01-01/hr=12/000000000000.parquet"
	basisTracks       = "tracks/day=2024-01-01/hr=13/000000000000.parquet"
	basisIdentifies   = "identifies/day=2024-01-01/hr=13/000000000000.parquet"
)

// badFixture is one generated export the cases take their files from.
type badFixture struct {
	gen string // the generated export
	// requests by the healthy two files, and by them with each basis file.
	healthy  map[string]bool
	withBase map[string]map[string]bool // basis path -> requests
}

var (
	fixtureOnce sync.Once
	fixture     *badFixture
	fixtureErr  error
)

func loadBadFixture(t *testing.T) *badFixture {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "badinput")
		if err != nil {
			fixtureErr = err
			return
		}
		f := &badFixture{gen: dir, withBase: map[string]map[string]bool{}}
		if _, err := generate.Generate(context.Background(), generate.Options{Out: dir, Rows: 2400, Seed: 5, Days: 1, RowGroupRows: 15}); err != nil {
			os.RemoveAll(dir)
			fixtureErr = err
			return
		}
		fixture = f
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixture
}

// removeBadFixture removes the generated export, which outlives the tests
// that share it.
func removeBadFixture() {
	if fixture != nil {
		os.RemoveAll(fixture.gen)
	}
}

func (f *badFixture) read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.gen, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// source lays out the two healthy files and extra files in a new folder.
func (f *badFixture) source(t *testing.T, extra map[string][]byte) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "export")
	files := map[string][]byte{healthyTracks: f.read(t, healthyTracks), healthyIdentifies: f.read(t, healthyIdentifies)}
	for k, v := range extra {
		files[k] = v
	}
	for rel, data := range files {
		writeFile(t, filepath.Join(src, rel), data)
	}
	return src
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// requestSet runs the job live over extra plus the healthy files and returns
// the distinct requests the simulator accepted.
func (f *badFixture) requestSet(t *testing.T, extra map[string][]byte) map[string]bool {
	t.Helper()
	src := f.source(t, extra)
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	if _, err := Run(context.Background(), testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL), testEnv(t)); err != nil {
		t.Fatalf("healthy run: %v", err)
	}
	return toSet(rec.requests(t))
}

func toSet(reqs []string) map[string]bool {
	s := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		s[r] = true
	}
	return s
}

// chunk locates column col of row group rg in a Parquet file.
func chunk(t *testing.T, data []byte, rg int, col string) (offset, size int64) {
	t.Helper()
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	md := pf.Metadata()
	if len(md.RowGroups) <= rg {
		t.Fatalf("basis file has %d row groups, the case needs row group %d", len(md.RowGroups), rg)
	}
	for _, c := range md.RowGroups[rg].Columns {
		if strings.Join(c.MetaData.PathInSchema, ".") == col {
			off := c.MetaData.DataPageOffset
			if c.MetaData.DictionaryPageOffset > 0 && c.MetaData.DictionaryPageOffset < off {
				off = c.MetaData.DictionaryPageOffset
			}
			return off, c.MetaData.TotalCompressedSize
		}
	}
	t.Fatalf("no column %q in row group %d", col, rg)
	return 0, 0
}

// footerStart is where the Parquet footer (thrift FileMetaData) begins.
func footerStart(data []byte) int {
	n := int(data[len(data)-8]) | int(data[len(data)-7])<<8 | int(data[len(data)-6])<<16 | int(data[len(data)-5])<<24
	return len(data) - 8 - n
}

type badIdentify struct {
	MessageID   string    `parquet:"message_id"`
	UserID      bool      `parquet:"user_id"`
	AnonymousID string    `parquet:"anonymous_id"`
	Timestamp   time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

func writeParquet[T any](t *testing.T, rows []T) []byte {
	t.Helper()
	var b bytes.Buffer
	w := parquet.NewGenericWriter[T](&b)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type badCase struct {
	name string
	path string // where the bad file goes; replaced by the same path of the generated export to fix it
	make func(t *testing.T, basis []byte) []byte
	// want in the fail message besides the object: row group, column
	want []string
	// midRead: the footer is fine and the failure comes while a row group
	// is read, after other row groups of the object may have been delivered.
	midRead bool
}

func badCases() []badCase {
	return []badCase{
		{name: "not parquet", path: basisTracks, want: []string{"not a Parquet file"},
			make: func(*testing.T, []byte) []byte { return []byte("message_id,user_id,event\n1,u1,Signed Up\n") }},
		{name: "zero bytes", path: basisTracks, want: []string{"empty object (0 bytes)"},
			make: func(*testing.T, []byte) []byte { return []byte{} }},
		{name: "truncated mid row group", path: basisTracks, want: []string{"truncated"},
			make: func(t *testing.T, b []byte) []byte {
				off, size := chunk(t, b, 1, "event")
				return slices.Clone(b[:off+size/2])
			}},
		// Every chunk after the cut is garbage: with two decoders, row
		// group 1 or 2 may fail first.
		{name: "row group cut out, footer kept", path: basisTracks, want: []string{"row group ", "column"}, midRead: true,
			make: func(t *testing.T, b []byte) []byte {
				off, size := chunk(t, b, 1, "event")
				return append(slices.Clone(b[:off+size/2]), b[footerStart(b):]...)
			}},
		{name: "corrupt footer", path: basisTracks, want: []string{"bad file"},
			make: func(t *testing.T, b []byte) []byte {
				b = slices.Clone(b)
				start := footerStart(b)
				for i := start; i < start+64 && i < len(b)-8; i++ {
					b[i] = 0xff
				}
				return b
			}},
		{name: "wrong magic", path: basisTracks, want: []string{"no PAR1 magic"},
			make: func(t *testing.T, b []byte) []byte { b = slices.Clone(b); copy(b, "PAR0"); return b }},
		{name: "corrupt column chunk", path: basisTracks, want: []string{"row group 1", `column "event"`}, midRead: true,
			make: func(t *testing.T, b []byte) []byte {
				b = slices.Clone(b)
				off, size := chunk(t, b, 1, "event")
				for i := off; i < off+size; i++ {
					b[i] = 0xff
				}
				return b
			}},
		{name: "required column of impossible type", path: basisIdentifies, want: []string{`"user_id"`},
			make: func(t *testing.T, _ []byte) []byte {
				return writeParquet(t, []badIdentify{{MessageID: "m1", UserID: true, AnonymousID: "a1", Timestamp: time.Unix(1704067200, 0)}})
			}},
	}
}

// badEnv captures the log and the summary, as an operator would see them.
func badEnv(buf *bytes.Buffer) Env {
	return Env{Log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn})), Stderr: buf, Stdout: io.Discard}
}

func TestBadInputs(t *testing.T) {
	f := loadBadFixture(t)
	healthy := f.requestSet(t, nil)
	if len(healthy) == 0 {
		t.Fatal("the healthy files make no requests")
	}
	whole := map[string]map[string]bool{}
	for _, p := range []string{basisTracks, basisIdentifies} {
		whole[p] = f.requestSet(t, map[string][]byte{p: f.read(t, p)})
		if len(whole[p]) <= len(healthy) {
			t.Fatalf("%s adds no request to the healthy files", p)
		}
	}
	ctx := context.Background()
	for _, c := range badCases() {
		t.Run(c.name, func(t *testing.T) {
			basis := f.read(t, c.path)
			bad := c.make(t, basis)
			src := f.source(t, map[string][]byte{c.path: bad})
			badURI := filepath.Join(src, filepath.FromSlash(c.path))
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})

			// fail: exit 1, the message names the object.
			var out bytes.Buffer
			o := testOptions(src, filepath.Join(t.TempDir(), "state-fail"), rec.srv.URL)
			o.OnBadFile = "fail"
			_, err := Run(ctx, o, badEnv(&out))
			if err == nil || !errors.Is(err, readers.ErrBadFile) || errors.Is(err, pipeline.ErrIncomplete) {
				t.Fatalf("fail: err = %v, want a bad file error (exit 1)", err)
			}
			for _, w := range append([]string{badURI}, c.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("fail: message does not say %q: %v", w, err)
				}
			}
			t.Logf("fail: %v", err)
			if c.midRead {
				// The plan pinned the broken version: fixed, the same
				// command plans the new version and reads it whole.
				writeFile(t, badURI, basis)
				later := time.Now().Add(-time.Minute)
				if err := os.Chtimes(badURI, later, later); err != nil {
					t.Fatal(err)
				}
				rep, err := Run(ctx, o, badEnv(&bytes.Buffer{}))
				if err != nil {
					t.Errorf("fail, fixed, same command: err = %v, want the fixed file read", err)
				} else if err := rep.Check(); err != nil || rep.Status != pipeline.StatusFinished {
					t.Errorf("fail, fixed, same command: status %s, %v", rep.Status, err)
				}
				writeFile(t, badURI, bad)
			}

			// skip: exit 2, the other files all delivered, the object listed.
			rec = newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			out.Reset()
			o.OnBadFile, o.State, o.Endpoint = "skip", filepath.Join(t.TempDir(), "state-skip"), rec.srv.URL
			rep, err := Run(ctx, o, badEnv(&out))
			if !errors.Is(err, pipeline.ErrIncomplete) {
				t.Fatalf("skip: err = %v, want ErrIncomplete (exit 2)", err)
			}
			if err := rep.Check(); err != nil {
				t.Errorf("skip: %v", err)
			}
			if len(rep.SkippedObjects) != 1 || rep.SkippedObjects[0].URI != badURI || rep.Counts.ObjectsSkipped != 1 {
				t.Fatalf("skip: report lists %+v (%d skipped), want %s", rep.SkippedObjects, rep.Counts.ObjectsSkipped, badURI)
			}
			so := rep.SkippedObjects[0]
			for _, w := range c.want {
				if !strings.Contains(so.Reason, w) {
					t.Errorf("skip: reason does not say %q: %s", w, so.Reason)
				}
			}
			if !strings.Contains(out.String(), "skipped file: "+badURI) {
				t.Errorf("skip: the summary does not name the skipped file:\n%s", out.String())
			}
			got := toSet(rec.requests(t))
			for r := range healthy {
				if !got[r] {
					t.Fatalf("skip: a request of the healthy files is missing: %s", r)
				}
			}
			for r := range got {
				if !whole[c.path][r] {
					t.Fatalf("skip: a request no healthy file makes was sent: %s", r)
				}
			}
			if c.midRead {
				// Row group 0 was read and delivered before row group 1
				// failed; what was not read is said.
				if so.RowsRead == 0 || so.RowsNotRead == 0 || len(got) == len(healthy) {
					t.Errorf("skip: mid-read failure: %d rows read, %d not read, %d requests beyond the healthy files",
						so.RowsRead, so.RowsNotRead, len(got)-len(healthy))
				}
			} else if len(got) != len(healthy) {
				t.Errorf("skip: %d requests, the healthy files make %d", len(got), len(healthy))
			}
			m := readManifest(t, o.State)
			if i := slices.IndexFunc(m.Objects, func(p pipeline.PlannedObject) bool { return p.URI == badURI }); i < 0 || m.Objects[i].Skipped == "" || m.Counts.ObjectsSkipped != 1 {
				t.Errorf("skip: the manifest does not record %s as skipped: %+v", badURI, m.Objects)
			}
			t.Logf("skip: %s\n%s", so.Reason, out.String())

			// A dry run sets the object aside the same way and succeeds.
			dry := o
			dry.DryRun, dry.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
			drep, err := Run(ctx, dry, badEnv(&bytes.Buffer{}))
			if err != nil || len(drep.SkippedObjects) != 1 || drep.SkippedObjects[0].URI != badURI {
				t.Errorf("skip, dry run: err %v, skipped %+v", err, drep.SkippedObjects)
			} else if err := drep.Check(); err != nil {
				t.Errorf("skip, dry run: %v", err)
			}

			// The same job again, unchanged: the object is still set aside.
			if _, err := Run(ctx, o, badEnv(&out)); !errors.Is(err, pipeline.ErrIncomplete) {
				t.Errorf("rerun before the fix: err = %v, want ErrIncomplete", err)
			}

			// Fixed: the same job picks it up, exit 0.
			writeFile(t, badURI, basis)
			later := time.Now().Add(time.Minute)
			if err := os.Chtimes(badURI, later, later); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			rep, err = Run(ctx, o, badEnv(&out))
			if err != nil {
				t.Fatalf("rerun after the fix: %v\n%s", err, out.String())
			}
			if err := rep.Check(); err != nil {
				t.Errorf("rerun: %v", err)
			}
			t.Logf("after the fix:\n%s", out.String())
			if len(rep.SkippedObjects) != 0 || rep.Counts.ObjectsSkipped != 0 || rep.Status != pipeline.StatusFinished {
				t.Errorf("rerun: status %s, skipped %+v (%d)", rep.Status, rep.SkippedObjects, rep.Counts.ObjectsSkipped)
			}
			if c.midRead != (rep.RowsReplaced > 0) {
				t.Errorf("rerun: %d rows replaced", rep.RowsReplaced)
			}
			got = toSet(rec.requests(t))
			if len(got) != len(whole[c.path]) {
				t.Errorf("after the fix: %d distinct requests, the healthy files with the fixed one make %d", len(got), len(whole[c.path]))
			}
			for r := range whole[c.path] {
				if !got[r] {
					t.Fatalf("after the fix: missing %s", r)
				}
			}
		})
	}
}

type oddTrack struct {
	MessageID       string    `parquet:"message_id"`
	UserID          string    `parquet:"user_id"`
	AnonymousID     string    `parquet:"anonymous_id"`
	ContextDeviceID string    `parquet:"context_device_id"`
	Event           string    `parquet:"event"`
	EventText       string    `parquet:"event_text"`
	UserAgent       string    `parquet:"context_user_agent"`
	IP              string    `parquet:"context_ip"`
	Timestamp       time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

// TestOddValues runs valid files with values at the edges: 1 MiB strings,
// invalid UTF-8, timestamps in years 1 and 9999.
func TestOddValues(t *testing.T) {
	f := loadBadFixture(t)
	ts := time.Date(2024, 1, 1, 13, 0, 0, 0, time.UTC)
	mib := strings.Repeat("Mozilla/5.0 ", 1<<20/12+1)[:1<<20]
	row := func(id string) oddTrack {
		return oddTrack{MessageID: id, UserID: "u-" + id, AnonymousID: "a-" + id, ContextDeviceID: "d-" + id,
			Event: "signed_up", EventText: "Signed Up", UserAgent: "ua", IP: "10.0.0.1", Timestamp: ts}
	}
	var rows []oddTrack
	add := func(id string, change func(r *oddTrack)) {
		r := row(id)
		change(&r)
		rows = append(rows, r)
	}
	// Every byte escaped: a 3 MiB URL.
	add("ua-1mib", func(r *oddTrack) { r.UserAgent = strings.Repeat("\xff/", 1<<19) })
	add("event-1mib", func(r *oddTrack) { r.EventText = mib })
	add("utf8", func(r *oddTrack) { r.ContextDeviceID, r.UserAgent = "d-\xff\xfe-1", "Mozilla\xc3\x28 é" })
	add("year-1", func(r *oddTrack) { r.Timestamp = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) })
	add("year-9999", func(r *oddTrack) { r.Timestamp = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) })
	odd := writeParquet(t, rows)
	healthy := f.requestSet(t, nil)
	ctx := context.Background()

	for _, mode := range []string{"fail", "skip"} {
		t.Run(mode, func(t *testing.T) {
			src := f.source(t, map[string][]byte{basisTracks: odd})
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			o := testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
			o.OnBadFile = mode
			var out bytes.Buffer
			rep, err := Run(ctx, o, badEnv(&out))
			// Not a bad file: the 3 MiB URL of the 1 MiB user agent is
			// dead-lettered unsent; every other row goes through.
			if !errors.Is(err, pipeline.ErrIncomplete) || errors.Is(err, readers.ErrBadFile) {
				t.Fatalf("err = %v, want ErrIncomplete for one dead letter\n%s", err, out.String())
			}
			c := rep.Counts
			if c.RowsDeadLettered != 1 || c.RequestsDeadLettered != 1 || c.ObjectsSkipped != 0 || c.RowsSkipped["unmapped_event"] == 0 {
				t.Errorf("counts %+v: want one row dead-lettered and the 1 MiB event name unmapped", c)
			}
			if err := rep.Check(); err != nil {
				t.Error(err)
			}
			got := toSet(rec.requests(t))
			for r := range healthy {
				if !got[r] {
					t.Errorf("missing a request of the healthy files: %s", r)
				}
			}
			for _, want := range []string{"eid=year-1&", "ts=-62135596800&", "eid=year-9999&", "ts=253402300799&", "eid=utf8&"} {
				if !slices.ContainsFunc(slices.Collect(maps.Keys(got)), func(r string) bool { return strings.Contains(r, want) }) {
					t.Errorf("no accepted request has %s", want)
				}
			}
			m, err := pipeline.ReadManifest(ctx, mustState(t, o.State), pipeline.Shard{Index: 0, Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			var dls []writers.DeadLetter
			for _, name := range m.DeadLetterFiles {
				d, err := writers.ReadDeadLetters(filepath.Join(o.State, filepath.FromSlash(name)))
				if err != nil {
					t.Fatal(err)
				}
				dls = append(dls, d...)
			}
			// The record is bounded: the URL's start, marked as cut.
			if len(dls) != 1 || dls[0].MessageID != "ua-1mib" || dls[0].Status != 0 || dls[0].Attempts != 0 ||
				len(dls[0].URL) > 4<<10 || !strings.HasSuffix(dls[0].URL, "(cut)") || !strings.Contains(dls[0].Reason, "not sent") {
				for _, d := range dls {
					d.URL = d.URL[:min(len(d.URL), 100)]
					t.Logf("dead letter %+v", d)
				}
				t.Fatalf("%d dead letters, want the 1 MiB user agent's, not sent", len(dls))
			}
			t.Logf("dead letter: status %d, reason %q", dls[0].Status, dls[0].Reason)
			if st := rec.sim.Stats(); st.Rejected != 0 {
				t.Errorf("the simulator refused %d requests: the long URL was sent", st.Rejected)
			}

			// The exact bytes sent: the dry run writes the URLs as built.
			o.DryRun, o.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
			if _, err := Run(ctx, o, badEnv(&out)); err != nil {
				t.Fatalf("dry run: %v", err)
			}
			dry, err := os.ReadFile(o.Out)
			if err != nil {
				t.Fatal(err)
			}
			// Invalid UTF-8 is percent-encoded byte by byte, never replaced.
			for _, want := range []string{"sid=d-%FF%FE-1", "cua=Mozilla%C3%28"} {
				if !bytes.Contains(dry, []byte(want)) {
					t.Errorf("dry run has no %s", want)
				}
			}
			// The dry run lists exactly what the live run sent: not the URL
			// it dead-lettered unsent.
			if bytes.Contains(dry, []byte("eid=ua-1mib")) {
				t.Error("the dry run lists the request the live run dead-letters unsent")
			}
		})
	}
}

func mustState(t *testing.T, uri string) pipeline.StateStore {
	t.Helper()
	st, err := pipeline.OpenState(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCorruptEachColumnChunk corrupts each column chunk of row group 1 in
// turn, two ways, and runs the job (dry, both modes) over it: never a panic;
// an error, when there is one, is a bad file naming the object, row group 1
// and the column.
func TestCorruptEachColumnChunk(t *testing.T) {
	f := loadBadFixture(t)
	basis := f.read(t, basisTracks)
	pf, err := parquet.OpenFile(bytes.NewReader(basis), int64(len(basis)))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "export")
	path := filepath.Join(src, filepath.FromSlash(basisTracks))
	ctx := context.Background()
	read := columnsRead(t, filepath.Join(f.gen, filepath.FromSlash(basisTracks)))
	patterns := map[string]func(b []byte){
		"ones": func(b []byte) {
			for i := range b {
				b[i] = 0xff
			}
		},
		"data half": func(b []byte) {
			for i := len(b) / 2; i < len(b); i++ {
				b[i] ^= 0x5a
			}
		},
	}
	caught, silent := 0, 0
	for _, c := range pf.Metadata().RowGroups[1].Columns {
		col := strings.Join(c.MetaData.PathInSchema, ".")
		off, size := chunk(t, basis, 1, col)
		for name, corrupt := range patterns {
			b := slices.Clone(basis)
			corrupt(b[off : off+size])
			writeFile(t, path, b)
			for _, mode := range []string{"fail", "skip"} {
				o := testOptions(src, "", "")
				o.OnBadFile, o.DryRun, o.Out = mode, true, filepath.Join(t.TempDir(), "dry.jsonl")
				rep, err := Run(ctx, o, testEnv(t))
				var msg string
				switch {
				case mode == "fail" && err != nil:
					msg = err.Error()
				case mode == "skip" && err == nil && len(rep.SkippedObjects) == 1:
					msg = rep.SkippedObjects[0].Reason
				case mode == "skip" && err == nil && len(rep.SkippedObjects) == 0:
				case mode == "fail" && err == nil:
				default:
					t.Fatalf("%s, %s, %s: err %v, report %+v", col, name, mode, err, rep)
				}
				if mode == "fail" && err != nil && !errors.Is(err, readers.ErrBadFile) {
					t.Errorf("%s, %s: not a bad file error: %v", col, name, err)
				}
				if msg != "" && (!strings.Contains(msg, path) || !strings.Contains(msg, "row group 1")) {
					t.Errorf("%s, %s, %s: message does not name the object and row group 1: %s", col, name, mode, msg)
				}
				if msg != "" && !strings.Contains(msg, `column "`+col+`"`) {
					t.Errorf("%s, %s, %s: message does not name the column: %s", col, name, mode, msg)
				}
				// Every corruption of a column the job reads is caught
				// (these patterns break a page header or the Snappy
				// stream; pages carry no checksum, so a change that still
				// decodes would pass); the others are never read.
				if read[col] != (msg != "") {
					t.Errorf("%s (read: %v), %s, %s: caught: %q", col, read[col], name, mode, msg)
				}
				if mode == "fail" {
					if msg != "" {
						caught++
					} else {
						silent++
					}
				}
			}
		}
	}
	t.Logf("%d corruptions caught, %d in columns the job does not read", caught, silent)
	if caught == 0 {
		t.Error("no corruption was caught")
	}
}

// columnsRead lists the columns the readers decode from a file.
func columnsRead(t *testing.T, path string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	src, err := readers.OpenSource(ctx, path, readers.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	objs, _, err := src.List(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("list %s: %v, %d objects", path, err, len(objs))
	}
	file, err := src.Open(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pf, err := readers.OpenParquet(ctx, file, objs[0], readers.Hint{})
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, col := range pf.Columns() {
		read[col] = true
	}
	return read
}
