package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// TestDeadLettersCommand: `deadletters --state` lists what a run
// dead-lettered, one line each, without the URLs unless --urls; --json one
// object per line. A state without a manifest is an error (exit 1).
func TestDeadLettersCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export, state := filepath.Join(dir, "export"), filepath.Join(dir, "state")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 300, Seed: 4, RowGroupRows: 100}); err != nil {
		t.Fatal(err)
	}
	// Refuse one device id: take it from a dry run's first request.
	var dry bytes.Buffer
	args := []string{"--source", export, "--state", state, "--account", "acme", "--client-name", "acme", "--site-id", "12"}
	if code := run(ctx, append([]string{"run", "--dry-run", "--out", "-"}, args...), &dry, &bytes.Buffer{}); code != 0 {
		t.Fatalf("dry run: exit %d", code)
	}
	var first struct{ URL string }
	line, _, _ := strings.Cut(dry.String(), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil {
		t.Fatal(err)
	}
	_, q, _ := strings.Cut(first.URL, "sid=")
	sid, _, _ := strings.Cut(q, "&")
	sim := simulator.New(simulator.Options{RejectSIDs: []string{sid}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	var stderr bytes.Buffer
	if code := run(ctx, append([]string{"run", "--endpoint", srv.URL}, args...), &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("run: exit %d, want 2 (dead letters)\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "× 400 Bad Request") {
		t.Errorf("the run's summary does not group its dead letters:\n%s", stderr.String())
	}

	var out bytes.Buffer
	if code := run(ctx, []string{"deadletters", "--state", state}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("deadletters: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "SHARD\t") || strings.Contains(out.String(), "sid=") || strings.Contains(out.String(), srv.URL) {
		t.Errorf("deadletters: want a header and lines without URLs:\n%s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"deadletters", "--state", state, "--json", "--urls"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("deadletters --json: exit %d", code)
	}
	jl := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(jl) != len(lines)-1 {
		t.Errorf("%d JSON lines, %d table lines", len(jl), len(lines)-1)
	}
	for _, l := range jl {
		var dl struct {
			Status int    `json:"status"`
			URL    string `json:"url"`
		}
		if err := json.Unmarshal([]byte(l), &dl); err != nil || dl.Status != 400 || !strings.Contains(dl.URL, "sid="+sid) {
			t.Errorf("JSON line %q (%v)", l, err)
		}
	}
	if code := run(ctx, []string{"deadletters", "--state", filepath.Join(dir, "none")}, &out, &stderr); code != 1 {
		t.Errorf("deadletters of an empty state: exit %d, want 1", code)
	}
}
