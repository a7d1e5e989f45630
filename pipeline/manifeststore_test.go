package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// The compact progress restores every unit exactly, whatever mix of done,
// partial, retired and untouched units a shard holds.
func TestCompactUnitsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		units := make([]UnitProgress, r.IntN(60))
		for i := range units {
			u := &units[i]
			u.Object, u.RowGroup, u.Rows = r.IntN(5), i, int64(r.IntN(20))
			u.Retired = r.IntN(10) == 0
			switch r.IntN(4) {
			case 0: // untouched
			case 1, 2:
				u.Watermark, u.Done = u.Rows, true
			case 3:
				for row := range u.Rows {
					if r.IntN(2) == 0 {
						u.MarkDone(row)
					}
				}
				if r.IntN(8) == 0 {
					u.Done = true // set aside: done without every row
				}
			}
		}
		back := make([]UnitProgress, len(units))
		for i, u := range units {
			back[i] = UnitProgress{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows, Retired: u.Retired}
		}
		c := compactUnits(units)
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var decoded UnitRanges
		if err := json.Unmarshal(data, &decoded); err != nil {
			t.Fatal(err)
		}
		if err := decoded.apply(back); err != nil {
			t.Fatal(err)
		}
		for i := range units {
			if len(units[i].Above) == 0 {
				units[i].Above = nil
			}
			if len(back[i].Above) == 0 {
				back[i].Above = nil
			}
		}
		if !reflect.DeepEqual(units, back) {
			t.Fatalf("trial %d: round trip changed the units\n got %+v\nwant %+v", trial, back, units)
		}
	}
}

// A commit writes the progress, not the plan: its size follows the work in
// flight, and is about the same at 1% and at 99% of a job of 100,000 units,
// whose plan is written once at Begin.
func TestCommitSizeFollowsWorkInFlight(t *testing.T) {
	ctx := context.Background()
	st := newDirState(t)
	const units = 100_000
	objs := make([]Object, units/10)
	for i := range objs {
		objs[i] = Object{URI: fmt.Sprintf("gs://b/day=2024-01-01/part-%05d.parquet", i), Key: fmt.Sprintf("day=2024-01-01/part-%05d.parquet", i),
			Size: 1 << 20, Version: "1700000000000000", RowGroups: []int64{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}}
	}
	m := newManifest(Config{Objects: objs, Shard: Shard{0, 1}, Window: 1024})
	clk := newTestClock()
	c, _, err := OpenCheckpoint(ctx, st, Shard{0, 1}, NewLease(), clk.now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Begin(ctx, m); err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != 1 {
		t.Fatalf("a plan written at Begin has parts %v, want one", m.Parts)
	}
	plan, _, err := st.Read(ctx, m.Parts[0])
	if err != nil {
		t.Fatal(err)
	}
	sizeAt := func(done int) int {
		for i := range done {
			m.Units[i].Watermark, m.Units[i].Done = m.Units[i].Rows, true
		}
		// a window of work in flight beyond: 20 units half done
		for i := done; i < min(done+20, units); i++ {
			m.Units[i].Watermark = 50
		}
		clk.advance(time.Second)
		if err := c.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		data, _, err := st.Read(ctx, ManifestName(Shard{0, 1}))
		if err != nil {
			t.Fatal(err)
		}
		return len(data)
	}
	at1, at50, at99 := sizeAt(units/100), sizeAt(units/2), sizeAt(units*99/100)
	t.Logf("plan %d bytes, written once; commits: %d bytes at 1%%, %d at 50%%, %d at 99%%", len(plan), at1, at50, at99)
	if at99 > 2*at1 || at50 > 2*at1 {
		t.Errorf("commit bytes grow with the progress: %d at 1%%, %d at 50%%, %d at 99%%", at1, at50, at99)
	}
	if at99*20 > len(plan) {
		t.Errorf("a commit (%d bytes) is not small next to the plan (%d bytes)", at99, len(plan))
	}
	// What a resume reads back is the same progress.
	c2, back, err := OpenCheckpoint(ctx, st, Shard{0, 1}, c.Owner(), clk.now, time.Minute)
	if err != nil || c2 == nil {
		t.Fatal(err)
	}
	if d, tot := back.RowsProgress(); d != int64(units*99/100)*100+20*50 || tot != units*100 {
		t.Errorf("resumed progress %d of %d rows", d, tot)
	}
	ms, err := ListManifests(ctx, st)
	if err != nil || len(ms) != 1 || ms[0].Units != nil {
		t.Fatalf("ListManifests: %v %v (want a summary without units)", ms, err)
	}
	if d, tot := ms[0].RowsProgress(); d != int64(units*99/100)*100+20*50 || tot != units*100 || ms[0].AllDone() {
		t.Errorf("summary progress %d of %d rows, all done %v", d, tot, ms[0].AllDone())
	}

	// Objects appended to the plan add a part of their own; the parts
	// before it stay as they are.
	if err := c.Finish(ctx, StatusStopped); err != nil {
		t.Fatal(err)
	}
	c3, m3, err := OpenCheckpoint(ctx, st, Shard{0, 1}, NewLease(), clk.now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	oldParts := slices.Clone(m3.Parts)
	m3.Objects = append(m3.Objects, PlannedObject{URI: "gs://b/late.parquet", Key: "late.parquet", Size: 1, Version: "2", RowGroups: []int64{7}})
	m3.Units = append(m3.Units, UnitProgress{Object: len(m3.Objects) - 1, Rows: 7})
	writes := &countingStore{StateStore: st}
	c3.st = writes
	if err := c3.Begin(ctx, m3); err != nil {
		t.Fatal(err)
	}
	if len(m3.Parts) != 2 || m3.Parts[0] != oldParts[0] {
		t.Fatalf("parts after an append: %v, want %v and one more", m3.Parts, oldParts)
	}
	if part := writes.bytesTo(m3.Parts[1]); part == 0 || part > 1024 {
		t.Errorf("the appended part is %d bytes, want the one object's (under 1 KiB)", part)
	}
	if _, _, err := st.Read(ctx, oldParts[0]); err != nil {
		t.Errorf("the first part %s: %v", oldParts[0], err)
	}
	// A plan changed in place (an object planned again at another
	// version) is written again as one part, and the old parts deleted.
	if err := c3.Finish(ctx, StatusStopped); err != nil {
		t.Fatal(err)
	}
	c4, m4, err := OpenCheckpoint(ctx, st, Shard{0, 1}, NewLease(), clk.now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d, tot := m4.RowsProgress(); tot != units*100+7 || d != int64(units*99/100)*100+20*50 {
		t.Errorf("progress read from two parts: %d of %d rows", d, tot)
	}
	replan(m4, 0, Object{URI: m4.Objects[0].URI, Key: m4.Objects[0].Key, Size: 2, Version: "9", RowGroups: []int64{5}}, Shard{0, 1}, slog.New(slog.DiscardHandler))
	if err := c4.Begin(ctx, m4); err != nil {
		t.Fatal(err)
	}
	if len(m4.Parts) != 1 || slices.Contains(m3.Parts, m4.Parts[0]) {
		t.Fatalf("parts after a replan: %v, want one new part", m4.Parts)
	}
	for _, old := range m3.Parts {
		if _, _, err := st.Read(ctx, old); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("the replaced part %s is still stored: %v", old, err)
		}
	}
}

// countingStore counts the bytes written to each name.
type countingStore struct {
	StateStore
	mu      sync.Mutex
	written map[string]int
	writes  map[string]int
}

func (s *countingStore) Write(ctx context.Context, name string, data []byte, pre objstore.Precondition) (string, error) {
	s.mu.Lock()
	if s.written == nil {
		s.written, s.writes = map[string]int{}, map[string]int{}
	}
	s.written[name] += len(data)
	s.writes[name]++
	s.mu.Unlock()
	return s.StateStore.Write(ctx, name, data, pre)
}

func (s *countingStore) bytesTo(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[name]
}

// ListKeys lets ListManifests list through the count.
func (s *countingStore) ListKeys(ctx context.Context, prefix string) ([]string, error) {
	return s.StateStore.(stateLister).ListKeys(ctx, prefix)
}

// An unfinished sharded manifest of an earlier version split objects' row
// groups among shards; resuming it with shards that own whole objects
// could leave row groups to nobody, so it is refused. A finished one, or
// one of a single shard, goes on.
func TestEarlierShardedManifestRefused(t *testing.T) {
	cfg := Config{Objects: testObjects(), Shard: Shard{0, 2}, Window: 64}.withDefaults()
	cfg.Job = testJob
	old := newManifest(cfg)
	old.Version = 3
	_, _, err := prepareManifest(cfg, Deps{Previous: old, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrJobMismatch) || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("unfinished version 3 manifest of shard 0/2: %v, want ErrJobMismatch naming --fresh", err)
	}
	for i := range old.Units {
		old.Units[i].Watermark, old.Units[i].Done = old.Units[i].Rows, true
	}
	old.Status = StatusFinished
	if _, _, err := prepareManifest(cfg, Deps{Previous: old, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatalf("finished version 3 manifest of shard 0/2: %v", err)
	}
	one := Config{Objects: testObjects(), Shard: Shard{0, 1}, Window: 64}.withDefaults()
	one.Job = testJob
	single := newManifest(one)
	single.Version = 3
	if _, _, err := prepareManifest(one, Deps{Previous: single, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatalf("unfinished version 3 manifest of one shard: %v", err)
	}
}
