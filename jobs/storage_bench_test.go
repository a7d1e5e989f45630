package jobs

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// storageBenchShapes are the exports BenchmarkDryRunStorage reads:
//   - small: one day, 168 files of 20 to 500 KB (41 MB), 1 to 4 row
//     groups of 500 rows each, most small enough that the decoder's first
//     tail read fetches the whole file;
//   - large: the generator's default shape, two days, 240 files of about
//     1.5 MB (376 MB), row groups of up to 10,000 rows (1.3 MB of mapped
//     column chunks), more than reading ahead's part of the default
//     memory budget holds at once.
var storageBenchShapes = []struct {
	name string
	o    generate.Options
}{
	{"small", generate.Options{Rows: 200_000, Seed: 19, Days: 1, RowGroupRows: 500}},
	{"large", generate.Options{Rows: 2_000_000, Seed: 19}},
}

// storageBenchRoots are the buckets holding a copy of an export, by
// backend and shape: uploaded once per test binary, which a -count run
// reuses (the export is generated again, byte for byte the same).
var storageBenchRoots = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

func storageBenchRoot(b *testing.B, backend, shape, export string) string {
	b.Helper()
	storageBenchRoots.Lock()
	defer storageBenchRoots.Unlock()
	if root, ok := storageBenchRoots.m[backend+"/"+shape]; ok {
		return root
	}
	root := remoteBackends[backend](b) + "/" + shape
	objstoretest.PutTree(b, export, root)
	storageBenchRoots.m[backend+"/"+shape] = root
	return root
}

// storageBenchDelay is the time to first byte the "+30ms" runs add to
// every request through the emulator's proxy: about what real GCS and S3
// take, where the emulators answer at once.
const storageBenchDelay = 30 * time.Millisecond

// BenchmarkDryRunStorage runs a dry run of the same export (of each
// shape) from local disk and from a bucket of each emulator (the real SDK client
// through the emulator's proxy), as they answer and with storageBenchDelay
// added to every request ("gcs+30ms"), with the default settings, and
// reports rows read a second and, for the remote ones, their ratio to
// local disk's rows a second in the same run (local runs first), the
// requests the emulator served and the bytes of their answers. Not in CI:
// make bench.
//
// The emulators run on the machine's own processors: it also reports the
// processor time a dry run took in this process (the job, and the proxy
// that counts and delays) and in the emulator, and machine-busy, their sum
// over the processors' time during the run. Near 1, the processors bound
// the remote runs, not the store's latency: a ratio to local disk measured
// here is at most the job's share of that time.
func BenchmarkDryRunStorage(b *testing.B) {
	for _, shape := range storageBenchShapes {
		b.Run(shape.name, func(b *testing.B) { benchDryRunStorage(b, shape.name, shape.o) })
	}
}

func benchDryRunStorage(b *testing.B, shape string, g generate.Options) {
	ctx := context.Background()
	export := filepath.Join(b.TempDir(), "export")
	g.Out = export
	if _, err := generate.Generate(ctx, g); err != nil {
		b.Fatal(err)
	}
	var localRate float64
	for _, name := range []string{"local", "gcs", "s3", "azure", "gcs+30ms", "s3+30ms", "azure+30ms"} {
		backend, delayed := strings.CutSuffix(name, "+30ms")
		b.Run(name, func(b *testing.B) {
			src := export
			if backend != "local" {
				src = storageBenchRoot(b, backend, shape, export)
			}
			dir := b.TempDir()
			// A dry run sends nothing: the endpoint is never dialled.
			o := testOptions(src, filepath.Join(dir, "state"), "http://127.0.0.1:1")
			o.DryRun, o.Out = true, filepath.Join(dir, "dry.jsonl")
			traffic := objstoretest.TrafficOf(backend) // nil for local
			if traffic != nil {
				traffic.Reset()
				if delayed {
					traffic.Delay.Store(int64(storageBenchDelay))
					defer traffic.Delay.Store(0)
				}
			}
			var rows int64
			self0, selfOK := objstoretest.SelfCPU()
			emu0, emuOK := objstoretest.EmulatorCPU(backend)
			b.ResetTimer()
			for b.Loop() {
				rep, err := Run(ctx, o, testEnv(nil))
				if err != nil {
					b.Fatalf("dry run from %s: %v", src, err)
				}
				if rep.Counts.RowsRead != int64(g.Rows) {
					b.Fatalf("dry run from %s read %d rows, want %d", src, rep.Counts.RowsRead, g.Rows)
				}
				rows += rep.Counts.RowsRead
			}
			rate := float64(rows) / b.Elapsed().Seconds()
			if self1, ok := objstoretest.SelfCPU(); ok && selfOK {
				cpu := self1 - self0
				b.ReportMetric(cpu.Seconds()/float64(b.N), "self-cpu-s/op")
				if emu1, ok := objstoretest.EmulatorCPU(backend); ok && emuOK {
					cpu += emu1 - emu0
					b.ReportMetric((emu1-emu0).Seconds()/float64(b.N), "emulator-cpu-s/op")
				}
				b.ReportMetric(cpu.Seconds()/(b.Elapsed().Seconds()*float64(runtime.NumCPU())), "machine-busy")
			}
			if traffic != nil {
				b.ReportMetric(float64(traffic.Requests.Load())/float64(b.N), "req/op")
				b.ReportMetric(float64(traffic.Bytes.Load())/float64(b.N)/1e6, "MB-served/op")
			}
			b.ReportMetric(rate, "rows/s")
			if backend == "local" {
				localRate = rate
			} else if localRate > 0 {
				b.ReportMetric(rate/localRate, "x-local")
			}
		})
	}
}
