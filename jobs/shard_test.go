package jobs

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// Each of 16 shards reads the footers of its own objects only, the shards
// together cover every object once, and a live run that resumes its ledger
// reads the footers of the objects that are new since, not of those it
// pinned.
func TestShardsReadOnlyTheirFooters(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	sum, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 6000, Seed: 5, Days: 4, RowGroupRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(export, "", "").withDefaults()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	seen := map[string]int{}
	footers := 0
	const n = 16
	for i := range n {
		in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: i, Count: n}, nil, log, false)
		if err != nil {
			t.Fatal(err)
		}
		if in.listed != sum.Files || in.otherShards != in.listed-len(in.refs) {
			t.Fatalf("shard %d: listed %d (export has %d files), %d for other shards, %d its own", i, in.listed, sum.Files, in.otherShards, len(in.refs))
		}
		if int(in.footers.Load()) != len(in.refs) {
			t.Errorf("shard %d read %d footers for its %d objects", i, in.footers.Load(), len(in.refs))
		}
		footers += int(in.footers.Load())
		for _, obj := range in.all() {
			seen[obj.URI]++
		}
	}
	if len(seen) != sum.Files || footers != sum.Files {
		t.Fatalf("16 shards covered %d of %d objects and read %d footers", len(seen), sum.Files, footers)
	}
	for uri, k := range seen {
		if k != 1 {
			t.Errorf("%s belongs to %d shards", uri, k)
		}
	}
	t.Logf("%d objects: each of 16 shards read 1/16 of the footers on average (%d in all)", sum.Files, footers)

	// A finished live run, then one more object: the next run reads one footer.
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	lo := testOptions(export, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
	if _, err := Run(ctx, lo, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	// Late files land in the same source (so it stays the same job).
	if _, err := generate.Generate(ctx, generate.Options{Out: filepath.Join(export, "late"), Rows: 100, Seed: 6, Days: 1, RowGroupRows: 50}); err != nil {
		t.Fatal(err)
	}
	p, err := prepare(ctx, lo, testEnv(t).withDefaults(), true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	newFiles := len(p.in.refs) - sum.Files
	if newFiles < 1 || int(p.in.footers.Load()) != newFiles {
		t.Errorf("resume read %d footers; %d objects are new and %d pinned by the ledger", p.in.footers.Load(), newFiles, sum.Files)
	}
	// Streamed, the same resume reads no footer before the run: the
	// objects the ledger pinned are known, the new ones are planned
	// while it goes, each footer read once.
	ps, err := prepare(ctx, lo, testEnv(t).withDefaults(), true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	if n := ps.in.footers.Load(); n != 0 || len(ps.in.known()) != sum.Files || ps.in.planner() == nil {
		t.Fatalf("streamed: %d footers read before the run, %d objects known (want 0 and %d), planner %v",
			n, len(ps.in.known()), sum.Files, ps.in.planner() != nil)
	}
	var planned []pipeline.Object
	if err := ps.in.planner()(ctx, func(objs []pipeline.Object) error {
		planned = append(planned, objs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(planned) != newFiles || int(ps.in.footers.Load()) != newFiles {
		t.Errorf("streamed: %d objects planned while running, %d footers read; want %d", len(planned), ps.in.footers.Load(), newFiles)
	}
}
