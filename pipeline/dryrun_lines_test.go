package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/writers"
)

// A row whose transform emits requests and then reports a skip writes no
// line: the dry run appends lines as they are emitted, into chunks reused
// from unit to unit, and must cut the row's lines off again. Long URLs fill
// chunks after a few rows, and a URL longer than a chunk grows one.
func TestDryRunDropsLinesOfRowSkippedAfterEmitting(t *testing.T) {
	for _, pad := range []int{0, 20 << 10, 300 << 10} {
		t.Run(fmt.Sprintf("pad%d", pad), func(t *testing.T) { testDryRunLines(t, pad) })
	}
}

func testDryRunLines(t *testing.T, pad int) {
	objs := testObjects()
	padded := newTestTransform("http://convertro.test")
	inner := func() Transform {
		tf := padded()
		var b []byte
		return func(m *segment.Message, emit func([]byte)) string {
			return tf(m, func(u []byte) {
				b = append(append(b[:0], u...), "&pad="...)
				for range pad {
					b = append(b, 'p')
				}
				emit(b)
			})
		}
	}
	emitThenSkip := func() Transform {
		tf := inner()
		return func(m *segment.Message, emit func([]byte)) string {
			reason := tf(m, emit)
			if reason == "" && string(m.Event) == "Order Completed" {
				return "unmapped_event" // after emitting its two requests
			}
			return reason
		}
	}
	var out bytes.Buffer
	rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: 2},
		Deps{Decoder: &memDecoder{batch: 5}, NewTransform: emitThenSkip, DryRun: &out, DryRunLine: writers.AppendDryRunLine})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	var want bytes.Buffer
	wantReasons := map[string]int64{}
	var wantSent int64
	tf := inner()
	for _, u := range BuildPlan(objs) {
		var lines [][]byte
		_ = (&memDecoder{batch: 1 << 20}).Decode(context.Background(), objs[u.Object], u.RowGroup, func(_ int64, batch []segment.Message, _ []string) error {
			for i := range batch {
				lines = lines[:0]
				reason := tf(&batch[i], func(b []byte) { lines = append(lines, bytes.Clone(b)) })
				if reason == "" && string(batch[i].Event) == "Order Completed" {
					reason = "unmapped_event"
				}
				if reason == "" && len(lines) == 0 {
					reason = SkipNoRequests
				}
				if reason != "" {
					wantReasons[reason]++
					continue
				}
				for _, l := range lines {
					want.Write(writers.AppendDryRunLine(nil, l))
					wantSent++
				}
			}
			return nil
		})
	}
	if wantReasons["unmapped_event"] == 0 || !bytes.Contains(want.Bytes(), []byte("/api/hit/")) {
		t.Fatalf("fixture has no row skipped after emitting, or none delivered")
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		t.Errorf("dry run wrote %d bytes, want %d: lines of skipped rows kept, or lost", out.Len(), want.Len())
	}
	if rep.WouldSend == nil || rep.WouldSend.Requests != wantSent || !maps.Equal(rep.Counts.RowsSkipped, wantReasons) {
		t.Errorf("counts %+v, want %d requests and skips %v", rep.Counts, wantSent, wantReasons)
	}
}

// The unit whose turn it is is written as its lines are made, not once it
// is done: a row group of millions of rows would otherwise hold all its
// lines (hundreds of MiB) before the first is written. The decoder of the
// only unit stops half-way until the writer has been given a line; the
// guard only keeps a regression from hanging the test.
func TestDryRunWritesTheUnitBeingWrittenAsItGoes(t *testing.T) {
	const rows = 4000
	objs := []Object{{URI: "mem://big.parquet", Key: "big.parquet", Size: 1, Version: "1", RowGroups: []int64{rows}}}
	written := make(chan struct{})
	out := &firstWrite{signal: written}
	inner := &memDecoder{batch: 100}
	dec := decoderFunc(func(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message, []string) error) error {
		return inner.Decode(ctx, obj, rg, func(first int64, batch []segment.Message, skip []string) error {
			if first == rows/2 { // a 1 KiB line a row: several chunks filled by now
				select {
				case <-written:
				case <-time.After(30 * time.Second):
					return errors.New("half the unit's lines made and none written")
				}
			}
			return fn(first, batch, skip)
		})
	})
	padded := func() Transform {
		tf := newTestTransform("http://convertro.test")()
		var b []byte
		return func(m *segment.Message, emit func([]byte)) string {
			return tf(m, func(u []byte) {
				b = append(append(b[:0], u...), "&pad="...)
				b = append(b, bytes.Repeat([]byte{'p'}, 1<<10)...)
				emit(b)
			})
		}
	}
	rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: 2},
		Deps{Decoder: dec, NewTransform: padded, DryRun: out, DryRunLine: writers.AppendDryRunLine})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	lines := int64(bytes.Count(out.b.Bytes(), []byte("\n")))
	if rep.Counts.RowsRead != rows || rep.WouldSend == nil || lines != rep.WouldSend.Requests || lines < rows/2 {
		t.Errorf("read %d rows and wrote %d lines; report %+v", rep.Counts.RowsRead, lines, rep.WouldSend)
	}
}

type decoderFunc func(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message, []string) error) error

func (f decoderFunc) Decode(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message, []string) error) error {
	return f(ctx, obj, rg, fn)
}

// firstWrite keeps what is written and closes signal at the first write.
type firstWrite struct {
	b      bytes.Buffer
	signal chan struct{}
	once   sync.Once
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.signal) })
	return w.b.Write(p)
}

// BenchmarkRunDryLargeUnits runs the dry run over row groups of 131,072
// rows (the size of a large warehouse export's), whose lines are streamed
// by the writer while their unit is its turn, and, in the same run, the
// reference: the same decoder, transform and line format in one loop into
// one reused buffer, with no ordering, chunks or writer. x-reference is
// the dry run's time over the reference's: what the parallel, ordered
// output costs or saves (below 1 with more than one core).
func BenchmarkRunDryLargeUnits(b *testing.B) {
	const groupRows = 131_072
	objs := []Object{{URI: "mem://large", Key: "large", RowGroups: []int64{groupRows, groupRows, groupRows, groupRows}}}
	rows := PlanRows(BuildPlan(objs))
	var dry, ref time.Duration
	for b.Loop() {
		t0 := time.Now()
		_, err := Run(context.Background(), Config{Job: testJob, Objects: objs},
			Deps{Decoder: &memDecoder{batch: 1024}, NewTransform: newTestTransform("http://x"), DryRun: io.Discard, DryRunLine: writers.AppendDryRunLine})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		tf := newTestTransform("http://x")()
		var lines []byte
		for _, u := range BuildPlan(objs) {
			err := (&memDecoder{batch: 1024}).Decode(context.Background(), objs[u.Object], u.RowGroup, func(_ int64, batch []segment.Message, _ []string) error {
				for i := range batch {
					tf(&batch[i], func(url []byte) { lines = writers.AppendDryRunLine(lines, url) })
					if len(lines) > 256<<10 {
						_, _ = io.Discard.Write(lines)
						lines = lines[:0]
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		dry, ref = dry+t1.Sub(t0), ref+time.Since(t1)
	}
	b.ReportMetric(float64(rows)*float64(b.N)/dry.Seconds(), "rows/s")
	b.ReportMetric(float64(rows)*float64(b.N)/ref.Seconds(), "reference-rows/s")
	b.ReportMetric(dry.Seconds()/ref.Seconds(), "x-reference")
}
