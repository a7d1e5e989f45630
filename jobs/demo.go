package jobs

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
)

// sample is a small export, bundled so that `convertro-etl run` with no
// arguments works from any folder, before its user has a bucket or an
// account. It was made, from the repository root, with
//
//	go run ./cmd/convertro-etl generate --out jobs/sample --rows 2000 --seed 1 --days 1 --row-group-rows 500
//
// (warehouse layout: one day of hourly partitions of five tables).
//
//go:embed all:sample
var sample embed.FS

// DemoOptions is the job the embedded default runs, against a simulator
// listening at endpoint, on the sample extracted to dir.
func DemoOptions(dir, endpoint string) Options {
	return Options{
		Sources:    []string{filepath.Join(dir, "export")},
		State:      filepath.Join(dir, "state"),
		Endpoint:   endpoint,
		Account:    "demo",
		ClientName: "demo",
		SiteID:     "1",
		Events: map[string]EventNames{
			"Signed Up":      {"signup"},
			"Product Viewed": {"product_view"},
			"Added to Cart":  {"add_to_cart", "cart"},
		},
	}
}

// Demo is the embedded default: it extracts the bundled sample export to a
// temporary folder, starts the Convertro simulator on a loopback port, runs
// the backfill job against it and prints the report and what the simulator
// received.
func Demo(ctx context.Context, env Env) error {
	env = env.withDefaults()
	scratch, err := newScratch(env, "demo")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer scratch.Release()
	dir := scratch.Dir
	if err := extract(sample, "sample", filepath.Join(dir, "export")); err != nil {
		return err
	}
	record, err := os.Create(filepath.Join(dir, "simulator-record.jsonl"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer record.Close()
	sim := simulator.New(simulator.Options{ClientName: "demo", SiteID: "1", Record: record})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: listen for the simulator: %w", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- sim.Serve(sctx, ln) }()
	defer func() { stop(); <-served; sim.Close() }()

	endpoint := "http://" + ln.Addr().String()
	fmt.Fprintf(env.Stderr, "convertro-etl: running the bundled sample export against the built-in Convertro simulator at %s\n", endpoint)
	_, err = Run(ctx, DemoOptions(dir, endpoint), env)
	st := sim.Stats()
	fmt.Fprintf(env.Stdout, "simulator: %d requests accepted, %d rejected, %d duplicates\n", st.Accepted, st.Rejected, st.Duplicates)
	return err
}

// extract copies the folder root of fsys into dir.
func extract(fsys fs.FS, root, dir string) error {
	return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("demo: extract %s: %w", p, err)
		}
		return os.WriteFile(dst, b, 0o644)
	})
}
