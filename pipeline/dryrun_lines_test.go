package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"testing"

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
