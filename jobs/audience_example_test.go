package jobs

import (
	"context"
	"maps"
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

// The README's computed traits example: examples/traits/job.yaml syncs the
// traits table next to it.
const traitsExample = "../examples/traits"

type exampleTrait struct {
	UserID string   `parquet:"user_id"`
	Trait  string   `parquet:"trait"`
	Number *float64 `parquet:"value_number,optional"`
	Text   *string  `parquet:"value_string,optional"`
	Date   *int32   `parquet:"value_date,optional,date"`
}

type exampleMember struct {
	UserID   string `parquet:"user_id"`
	Audience string `parquet:"audience"`
	Member   bool   `parquet:"member"`
}

// TestWriteAudienceSample (re)writes examples/audience/memberships.parquet
// and examples/traits/traits.parquet from the users of the bundled sample;
// run with CONVERTRO_WRITE_AUDIENCE_SAMPLE=1 after regenerating the sample.
func TestWriteAudienceSample(t *testing.T) {
	if os.Getenv("CONVERTRO_WRITE_AUDIENCE_SAMPLE") == "" {
		t.Skip("set CONVERTRO_WRITE_AUDIENCE_SAMPLE=1 to rewrite the examples")
	}
	us := sampleUsers(t)
	var rows []exampleMember
	for i, u := range us[:12] {
		rows = append(rows, exampleMember{u, "High Value", i < 8})
		if i%3 == 0 {
			rows = append(rows, exampleMember{u, "Cart Abandoners", true})
		}
	}
	rows = append(rows, exampleMember{"user-without-device", "High Value", true})
	writeAudienceParquet(t, filepath.Join(audienceExample, "memberships.parquet"), rows)

	var traits []exampleTrait
	categories := []string{"shoes", "hats", "bags"}
	for i, u := range us[:6] {
		traits = append(traits,
			exampleTrait{UserID: u, Trait: "Lifetime Value", Number: p(float64(100*i) + 0.5)},
			exampleTrait{UserID: u, Trait: "Favorite Category", Text: p(categories[i%3])},
			exampleTrait{UserID: u, Trait: "First Order Date", Date: p(int32(19724 + i))})
	}
	traits = append(traits, exampleTrait{UserID: us[6], Trait: "Lifetime Value"}) // no value: nothing to remove yet
	writeAudienceParquet(t, filepath.Join(traitsExample, "traits.parquet"), traits)
}

// sampleUsers lists the users of the bundled sample that have a device id.
func sampleUsers(t *testing.T) []string {
	t.Helper()
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
	return us
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

// TestTraitsExampleJobFile runs the README's computed traits example against
// the simulator, twice: the second sync has nothing to send.
func TestTraitsExampleJobFile(t *testing.T) {
	o, err := LoadFile(filepath.Join(traitsExample, "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, simulator.Options{ClientName: o.ClientName, SiteID: o.SiteID})
	o.Endpoint, o.State = rec.srv.URL, t.TempDir()
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	firstOrder := map[string]bool{}
	for _, r := range sentProps(t, rec.requests(t)) {
		k, v, _ := strings.Cut(strings.Fields(r)[3], "=")
		count[k]++
		if k == "first_order_date" {
			firstOrder[v] = true
		}
	}
	if want := map[string]int{"lifetime_value": 6, "favorite_category": 6, "first_order_date": 6}; !maps.Equal(count, want) {
		t.Errorf("sent %v, want %v", count, want)
	}
	if !firstOrder["1704153600"] { // DATE 2024-01-02: its midnight UTC
		t.Errorf("first_order_date values %v, want 1704153600 among them", firstOrder)
	}
	rec.reset()
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.requests(t)); n != 0 {
		t.Errorf("the second sync of the same table sent %d requests", n)
	}
}
