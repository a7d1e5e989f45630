package jobs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/readers"
)

// The README's audience example: examples/audience/job.yaml syncs the tiny
// membership table next to it, with device ids from the bundled sample's
// identifies.
const audienceExample = "../examples/audience"

type exampleMember struct {
	UserID   string `parquet:"user_id"`
	Audience string `parquet:"audience"`
	Member   bool   `parquet:"member"`
}

// TestWriteAudienceSample (re)writes examples/audience/memberships.parquet
// from the users of the bundled sample; run with
// CONVERTRO_WRITE_AUDIENCE_SAMPLE=1 after regenerating the sample.
func TestWriteAudienceSample(t *testing.T) {
	if os.Getenv("CONVERTRO_WRITE_AUDIENCE_SAMPLE") == "" {
		t.Skip("set CONVERTRO_WRITE_AUDIENCE_SAMPLE=1 to rewrite the example")
	}
	in := &audienceInputs{}
	defer in.close()
	if err := in.add(context.Background(), "sample/identifies", readers.SourceOptions{}, func(*audienceTable) error { return nil }); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var us []string
	for _, tb := range in.tables {
		if err := tb.open(context.Background()); err != nil {
			t.Fatal(err)
		}
		for g := range tb.tbl.RowGroups() {
			tb.tbl.ReadRowGroup(context.Background(), g, []string{"user_id", "context_device_id"}, func(_ int64, c []readers.Cell) error {
				u := string(c[0].Text)
				if !c[0].Null && u != "" && !c[1].Null && !seen[u] {
					seen[u] = true
					us = append(us, u)
				}
				return nil
			})
		}
		tb.closeFile()
	}
	slices.Sort(us)
	if len(us) < 12 {
		t.Fatalf("the sample has %d users with a device id, want 12", len(us))
	}
	var rows []exampleMember
	for i, u := range us[:12] {
		rows = append(rows, exampleMember{u, "High Value", i < 8})
		if i%3 == 0 {
			rows = append(rows, exampleMember{u, "Cart Abandoners", true})
		}
	}
	rows = append(rows, exampleMember{"user-without-device", "High Value", true})
	writeAudienceParquet(t, filepath.Join(audienceExample, "memberships.parquet"), rows)
}

// TestAudienceExampleJobFile runs the README's example against the simulator.
func TestAudienceExampleJobFile(t *testing.T) {
	o, err := LoadFile(filepath.Join(audienceExample, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, simulator.Options{ClientName: o.ClientName, SiteID: o.SiteID})
	o.Endpoint, o.State = rec.srv.URL, t.TempDir()
	rep, err := Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	reqs := rec.requests(t)
	var hv, ca int
	for _, r := range reqs {
		switch {
		case strings.Contains(r, "high_value=true"):
			hv++
		case strings.Contains(r, "cart_abandoners=true"):
			ca++
		default:
			t.Errorf("unexpected request %s", r)
		}
	}
	if hv != 8 || ca != 4 {
		t.Errorf("sent %d high_value and %d cart_abandoners entries, want 8 and 4: %v", hv, ca, reqs)
	}
	if n := rep.Counts.RowsSkipped["missing_device_id"]; n != 1 {
		t.Errorf("missing_device_id = %d, want 1", n)
	}
}
