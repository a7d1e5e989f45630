package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

func TestProgressMarkDone(t *testing.T) {
	for _, tc := range []struct {
		name          string
		rows          int64
		acks          []int64
		wantWatermark int64
		wantAbove     []int64
		wantDone      bool
	}{
		{name: "in order", rows: 10, acks: []int64{0, 1, 2, 3}, wantWatermark: 4},
		{name: "gap keeps rows above", rows: 10, acks: []int64{0, 2, 3, 5}, wantWatermark: 1, wantAbove: []int64{2, 3, 5}},
		{name: "gap filled merges", rows: 10, acks: []int64{0, 2, 3, 5, 1}, wantWatermark: 4, wantAbove: []int64{5}},
		{name: "out of order", rows: 10, acks: []int64{4, 2, 3, 1, 0}, wantWatermark: 5},
		{name: "inserted in the middle", rows: 10, acks: []int64{9, 3, 6, 4}, wantWatermark: 0, wantAbove: []int64{3, 4, 6, 9}},
		{name: "duplicates", rows: 10, acks: []int64{0, 0, 2, 2, 1, 1, 2}, wantWatermark: 3},
		{name: "duplicate above", rows: 10, acks: []int64{5, 3, 5, 3}, wantAbove: []int64{3, 5}},
		{name: "all done in order", rows: 3, acks: []int64{0, 1, 2}, wantWatermark: 3, wantDone: true},
		{name: "all done reversed", rows: 4, acks: []int64{3, 2, 1, 0}, wantWatermark: 4, wantDone: true},
		{name: "out of range ignored", rows: 3, acks: []int64{-1, 3, 7, 0}, wantWatermark: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := UnitProgress{Rows: tc.rows}
			for _, r := range tc.acks {
				u.MarkDone(r)
			}
			if u.Watermark != tc.wantWatermark || !slices.Equal(u.Above, tc.wantAbove) || u.Done != tc.wantDone {
				t.Errorf("after %v: watermark %d above %v done %v, want %d %v %v",
					tc.acks, u.Watermark, u.Above, u.Done, tc.wantWatermark, tc.wantAbove, tc.wantDone)
			}
			acked := map[int64]bool{}
			for _, r := range tc.acks {
				if r >= 0 && r < tc.rows {
					acked[r] = true
				}
			}
			for r := range tc.rows {
				if u.IsDone(r) != acked[r] {
					t.Errorf("IsDone(%d) = %v, want %v", r, u.IsDone(r), acked[r])
				}
			}
			if u.Acked() != int64(len(acked)) {
				t.Errorf("Acked() = %d, want %d", u.Acked(), len(acked))
			}
		})
	}
}

// TestProgressRoughOrder acks rows the way concurrent senders do (in order
// within a window of 16) and checks the invariants after every ack.
func TestProgressRoughOrder(t *testing.T) {
	const rows = 5000
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int64, rows)
	for i := range order {
		order[i] = int64(i)
	}
	for i := 0; i+16 <= rows; i += 8 {
		w := order[i : i+16]
		rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
	}
	u := UnitProgress{Rows: rows}
	acked := make([]bool, rows)
	for n, r := range order {
		u.MarkDone(r)
		acked[r] = true
		wm := int64(slices.Index(acked, false))
		if wm < 0 {
			wm = rows
		}
		if u.Watermark != wm {
			t.Fatalf("after %d acks: watermark %d, want %d", n+1, u.Watermark, wm)
		}
		if !slices.IsSorted(u.Above) || (len(u.Above) > 0 && u.Above[0] <= u.Watermark) {
			t.Fatalf("after %d acks: above %v not sorted above watermark %d", n+1, u.Above, u.Watermark)
		}
		if u.Acked() != int64(n+1) {
			t.Fatalf("after %d acks: Acked() = %d", n+1, u.Acked())
		}
	}
	if !u.Done || len(u.Above) != 0 {
		t.Errorf("all rows acked: done %v above %v", u.Done, u.Above)
	}
}

func BenchmarkProgressMarkDoneInOrder(b *testing.B) {
	u := UnitProgress{}
	for i := range b.N {
		u.MarkDone(int64(i))
	}
}

func sampleManifest() *Manifest {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	return &Manifest{
		Version: ManifestVersion,
		Job:     JobID{Kind: "backfill", Fingerprint: "ab12", Description: "backfill gs://in 2026-11-28"},
		Shard:   Shard{Index: 1, Count: 4},
		Status:  "running",
		Objects: []PlannedObject{
			{URI: "gs://in/a.parquet", Key: "a.parquet", Size: 1234, Version: "1700000000000001", RowGroups: []int64{100, 50}},
			{URI: "gs://in/bad.parquet", Key: "bad.parquet", Size: 9, Version: "7", Skipped: "not a parquet file"},
		},
		Units: []UnitProgress{
			{Object: 0, RowGroup: 0, Rows: 100, Watermark: 100, Done: true},
			{Object: 0, RowGroup: 1, Rows: 50, Watermark: 10, Above: []int64{12, 13}},
		},
		Counts: Counts{
			RowsRead: 112, RowsDelivered: 100, RowsDeadLettered: 2,
			RowsSkipped:  map[string]int64{"missing_user_id": 10},
			RequestsSent: 120, RequestsAcked: 118, RequestsDeadLettered: 2,
			RequestsRetried: 3, PossibleDuplicates: 1, ObjectsSkipped: 1,
		},
		Lease:   Lease{Owner: "h/42/abcd", Host: "h", PID: 42, Expires: t0.Add(30 * time.Second), PIDNS: "pid:[4026531836]"},
		Runs:    2,
		Window:  256,
		Created: t0.Add(-time.Hour),
		Updated: t0,
	}
}

func TestManifestJSONRoundTrip(t *testing.T) {
	m := sampleManifest()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeManifest("test", data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip changed the manifest:\n got %+v\nwant %+v", got, m)
	}
	// The document's keys are part of the format (status tools read them).
	var raw map[string]any
	json.Unmarshal(data, &raw)
	for _, k := range []string{"version", "job", "shard", "status", "objects", "units", "counts", "lease", "runs", "window", "created", "updated"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("manifest JSON has no %q key: %s", k, data)
		}
	}
	if c := raw["counts"].(map[string]any); c["rows_dead_lettered"] != 2.0 || c["possible_duplicates"] != 1.0 {
		t.Errorf("counts JSON not snake_case: %v", c)
	}
}

func TestManifestDecodeRejects(t *testing.T) {
	for name, data := range map[string]string{
		"garbage":      "{not json",
		"no version":   `{"status":"running"}`,
		"newer format": `{"version":99,"status":"running"}`,
	} {
		if _, err := decodeManifest("x", []byte(data)); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: err = %v, want ErrBadManifest", name, err)
		}
	}
}

func TestShardNames(t *testing.T) {
	for _, s := range []Shard{{0, 1}, {3, 4}, {11, 12}} {
		name := ManifestName(s)
		got, ok := parseManifestName(name)
		if !ok || got != s {
			t.Errorf("parseManifestName(%q) = %v %v, want %v", name, got, ok, s)
		}
		p, err := ParseShard(s.String())
		if err != nil || p != s {
			t.Errorf("ParseShard(%q) = %v %v", s.String(), p, err)
		}
	}
	if got := ManifestName(Shard{2, 5}); got != "manifest-2-of-5.json" {
		t.Errorf("ManifestName = %q", got)
	}
	for _, name := range []string{"manifest-4-of-4.json", "manifest-01-of-2.json", "manifest-0-of-1.json.tmp", "report-0-of-1.json", "manifest--1-of-2.json"} {
		if s, ok := parseManifestName(name); ok {
			t.Errorf("parseManifestName(%q) = %v, want no shard", name, s)
		}
	}
	for _, in := range []string{"", "1", "2/2", "-1/2", "a/b", "0/0"} {
		if _, err := ParseShard(in); !errors.Is(err, ErrInvalidShard) {
			t.Errorf("ParseShard(%q): err = %v, want ErrInvalidShard", in, err)
		}
	}
}

func TestManifestReadAndList(t *testing.T) {
	for _, s := range stateStores {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			st := s.open(t)
			if _, err := ReadManifest(ctx, st, Shard{0, 2}); !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("ReadManifest of a shard that never ran: err = %v, want objstore.ErrNotFound", err)
			}
			if ms, err := ListManifests(ctx, st); err != nil || len(ms) != 0 {
				t.Fatalf("ListManifests on empty state = %v, %v", ms, err)
			}
			for _, sh := range []Shard{{1, 2}, {0, 2}, {0, 1}} {
				m := sampleManifest()
				m.Shard = sh
				data, _ := json.Marshal(m)
				mustWrite(t, st, ManifestName(sh), string(data), objstore.IfAbsent)
			}
			mustWrite(t, st, "report-0-of-2.json", "{}", objstore.IfAbsent)
			m, err := ReadManifest(ctx, st, Shard{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			if m.Shard != (Shard{1, 2}) || m.Counts.RowsRead != 112 {
				t.Errorf("ReadManifest = shard %v rows %d", m.Shard, m.Counts.RowsRead)
			}
			ms, err := ListManifests(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			var got []Shard
			for _, m := range ms {
				got = append(got, m.Shard)
			}
			if want := []Shard{{0, 1}, {0, 2}, {1, 2}}; !slices.Equal(got, want) {
				t.Errorf("ListManifests shards = %v, want %v", got, want)
			}
			// A manifest under another shard's name is refused, not used.
			wrong := sampleManifest()
			wrong.Shard = Shard{0, 3}
			data, _ := json.Marshal(wrong)
			mustWrite(t, st, ManifestName(Shard{1, 3}), string(data), objstore.IfAbsent)
			if _, err := ReadManifest(ctx, st, Shard{1, 3}); !errors.Is(err, ErrBadManifest) {
				t.Errorf("manifest of shard 0/3 under 1/3's name: err = %v, want ErrBadManifest", err)
			}
		})
	}
}
