package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

// hugeValueExport writes a tracks file of rows normal rows in which row 1
// has a context_user_agent of uaBytes and row 2 a message_id of idBytes
// (0: normal), and returns the export's folder.
func hugeValueExport(tb testing.TB, dir string, rows, uaBytes, idBytes int, opts ...parquet.WriterOption) string {
	tb.Helper()
	ts := time.Date(2024, 1, 1, 13, 0, 0, 0, time.UTC)
	rs := make([]oddTrack, rows)
	for i := range rs {
		id := fmt.Sprint("m-", i)
		rs[i] = oddTrack{MessageID: id, UserID: "u-" + id, ContextDeviceID: "d-" + id,
			Event: "signed_up", EventText: "Signed Up", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", IP: "10.0.0.1", Timestamp: ts}
	}
	if uaBytes > 0 {
		rs[1].UserAgent = strings.Repeat("Mozilla/5.0 ", uaBytes/12+1)[:uaBytes]
	}
	if idBytes > 0 {
		rs[2].MessageID = strings.Repeat("i", idBytes)
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[oddTrack](&b, opts...)
	if _, err := w.Write(rs); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	src := filepath.Join(dir, "export")
	p := filepath.Join(src, filepath.FromSlash(basisTracks))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return src
}

// TestHugeValueIsDeadLetteredBounded: a row whose value makes a URL over
// MaxURLBytes (a 160 KiB user agent; a 100 KiB message id: both longer than readers.MaxValueBytes too) is dead-lettered
// unsent with a record of a few KiB, never a copy of the value, and the dry
// run lists exactly what the live run sent, counting those rows the same way.
func TestHugeValueIsDeadLetteredBounded(t *testing.T) {
	ctx := context.Background()
	src := hugeValueExport(t, t.TempDir(), 20, 160<<10, 100<<10)
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
	o.Events = nil // every track is sent under its own name
	var out bytes.Buffer
	rep, err := Run(ctx, o, badEnv(&out))
	if !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete for two dead letters\n%s", err, out.String())
	}
	if c := rep.Counts; c.RowsDelivered != 18 || c.RowsDeadLettered != 2 || c.RequestsDeadLettered != 2 {
		t.Errorf("counts %+v: want 18 rows delivered, 2 dead-lettered", c)
	}
	m, err := pipeline.ReadManifest(ctx, mustState(t, o.State), pipeline.Shard{Index: 0, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	var dls []writers.DeadLetter
	var stored int64
	for _, name := range m.DeadLetterFiles {
		p := filepath.Join(o.State, filepath.FromSlash(name))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		stored += fi.Size()
		d, err := writers.ReadDeadLetters(p)
		if err != nil {
			t.Fatal(err)
		}
		dls = append(dls, d...)
	}
	dls = writers.MergeDeadLetters(dls) // in row order
	if stored > 64<<10 {
		t.Errorf("dead-letter files hold %d bytes for two rows", stored)
	}
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	for _, d := range dls {
		size := len(d.MessageID) + len(d.URL) + len(d.Reason) + len(d.Response) + len(d.Object)
		if size > 4<<10 || !strings.HasSuffix(d.URL, "(cut)") || !strings.Contains(d.Reason, "not sent") || d.Status != 0 {
			t.Errorf("dead letter of row %d: %d bytes of text, url ends %q, reason %q", d.Row, size, d.URL[max(0, len(d.URL)-20):], d.Reason)
		}
		wire := convertro.NewWire(convertro.Settings{ClientName: "acme", SiteID: "12", Endpoint: rec.srv.URL})
		if _, err := wire.Retarget(d.URL); err == nil {
			t.Errorf("the cut URL of row %d can be replayed", d.Row)
		}
	}
	if dls[0].Row != 1 || !strings.Contains(dls[0].URL, "eid=m-1&") || dls[1].Row != 2 || !strings.HasPrefix(dls[1].MessageID, "iii") {
		t.Errorf("dead letters of rows %d (%.80s) and %d (id %.20s…)", dls[0].Row, dls[0].URL, dls[1].Row, dls[1].MessageID)
	}
	if st := rec.sim.Stats(); st.Rejected != 0 {
		t.Errorf("the simulator refused %d requests: a long URL was sent", st.Rejected)
	}
	sent := rec.requests(t)

	o.DryRun, o.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
	dry, err := Run(ctx, o, badEnv(&out))
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	diffRequests(t, "dry run vs live", dryRunRequests(t, o.Out), sent)
	if ws := dry.WouldSend; ws == nil || dry.Counts.RowsDeadLettered != rep.Counts.RowsDeadLettered ||
		ws.Rows != rep.Counts.RowsDelivered || ws.Requests != rep.Counts.RequestsAcked {
		t.Errorf("dry run counts %+v would send %+v, live %+v", dry.Counts, dry.WouldSend, rep.Counts)
	}
}

// TestHugeValueRunMemoryBounded: a run over a file with a 16 MiB user agent
// allocates less than half the value's size more than the same run
// over a file whose long user agent is 160 KiB (dead-lettered too, so both
// runs write a dead-letter file), dry or live: the value's copies in the
// Parquet statistics are never decoded and its page is cut before the
// library reads it. The row is dead-lettered, the others delivered.
// (Before, the run allocated about 15 times the value's size more.)
// Allocations, not the heap's peak, are compared: they do not depend on
// when the collector runs.
func TestHugeValueRunMemoryBounded(t *testing.T) {
	const size = 16 << 20
	ctx := context.Background()
	long := hugeValueExport(t, t.TempDir(), 200, 160<<10, 0)
	huge := hugeValueExport(t, t.TempDir(), 200, size, 0)
	for _, dry := range []bool{true, false} {
		run := func(src string) (*pipeline.Report, uint64) {
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			o := testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
			o.Events = nil
			if dry {
				o.DryRun, o.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var out bytes.Buffer
			rep, err := Run(ctx, o, badEnv(&out))
			runtime.ReadMemStats(&after)
			if err != nil && !errors.Is(err, pipeline.ErrIncomplete) {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			return rep, after.TotalAlloc - before.TotalAlloc
		}
		_, base := run(long)
		rep, alloc := run(huge)
		t.Logf("dry %v: %.1f MiB allocated, %.1f MiB with a value of 160 KiB", dry, float64(alloc)/(1<<20), float64(base)/(1<<20))
		if alloc > base+size/2 {
			t.Errorf("dry %v: %.1f MiB allocated for a value of %d MiB, %.1f MiB for one of 160 KiB", dry, float64(alloc)/(1<<20), size>>20, float64(base)/(1<<20))
		}
		delivered := rep.Counts.RowsDelivered
		if dry && rep.WouldSend != nil {
			delivered = rep.WouldSend.Rows
		}
		if c := rep.Counts; c.RowsRead != 200 || c.RowsDeadLettered != 1 || len(c.RowsSkipped) != 0 || delivered != 199 {
			t.Errorf("dry %v: counts %+v, %d delivered; want the long row dead-lettered and 199 others delivered", dry, c, delivered)
		}
	}
}

// BenchmarkHugeValue runs a dry run and a live run (against the simulator)
// over a file with one 10 MiB or 50 MiB user agent (uncompressed, or 50 MiB
// compressed with Snappy), and over the same file without it,
// and reports the peak heap of each (sampled) and the bytes allocated. Not
// in CI: make bench.
func BenchmarkHugeValue(b *testing.B) {
	ctx := context.Background()
	snappy := []parquet.WriterOption{parquet.Compression(&parquet.Snappy)}
	for _, c := range []struct {
		name string
		ua   int
		opts []parquet.WriterOption
	}{
		{"normal", 0, nil}, {"ua-10MiB", 10 << 20, nil}, {"ua-50MiB", 50 << 20, nil},
		// A compressed page is decompressed whole by the Parquet library
		// before anything can cut its values.
		{"ua-50MiB-snappy", 50 << 20, snappy},
	} {
		src := hugeValueExport(b, b.TempDir(), 1000, c.ua, 0, c.opts...)
		for _, dry := range []bool{true, false} {
			name := c.name + "/live"
			if dry {
				name = c.name + "/dry"
			}
			b.Run(name, func(b *testing.B) {
				var peak uint64
				var allocated uint64
				for b.Loop() {
					rec := newRecorder(b, simulator.Options{ClientName: "acme", SiteID: "12"})
					o := testOptions(src, filepath.Join(b.TempDir(), "state"), rec.srv.URL)
					o.Events = nil
					if dry {
						o.DryRun, o.Out = true, filepath.Join(b.TempDir(), "dry.jsonl")
					}
					runtime.GC()
					var before runtime.MemStats
					runtime.ReadMemStats(&before)
					var top atomic.Uint64
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() { // sampled: the peak between samples may be missed
						defer close(done)
						var ms runtime.MemStats
						for {
							runtime.ReadMemStats(&ms)
							if ms.HeapInuse > top.Load() {
								top.Store(ms.HeapInuse)
							}
							select {
							case <-stop:
								return
							case <-time.After(5 * time.Millisecond):
							}
						}
					}()
					var out bytes.Buffer
					_, err := Run(ctx, o, badEnv(&out))
					close(stop)
					<-done
					if err != nil && !errors.Is(err, pipeline.ErrIncomplete) {
						b.Fatalf("run: %v\n%s", err, out.String())
					}
					var after runtime.MemStats
					runtime.ReadMemStats(&after)
					peak = max(peak, top.Load())
					allocated = after.TotalAlloc - before.TotalAlloc
					rec.srv.Close()
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(allocated)/(1<<20), "alloc-MiB")
			})
		}
	}
}
