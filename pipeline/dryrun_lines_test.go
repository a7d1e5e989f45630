package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
