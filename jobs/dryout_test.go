package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/readers"
)

// TestDryRunOutputWholeOrNotAtAll: a dry run that fails partway leaves the
// file at --out as it was, and no temporary file; one that finishes puts
// every line there. The next dry run to the same file removes the temporary
// file a killed one left (unwritten for over an hour) and spares a younger
// one and those of other files. Through a symbolic link (as to a device,
// which the test leaves alone: a fault would replace /dev/null when run as
// root) it is written in place.
func TestDryRunOutputWholeOrNotAtAll(t *testing.T) {
	f := loadBadFixture(t)
	basis := f.read(t, basisTracks)
	off, size := chunk(t, basis, 1, "event")
	for i := off; i < off+size; i++ {
		basis[i] = 0xff
	}
	src := f.source(t, map[string][]byte{basisTracks: basis})
	dir := t.TempDir()
	out := filepath.Join(dir, "requests.jsonl")
	if err := os.WriteFile(out, []byte("the last good run's requests\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	temp := func(base, hex string, age time.Duration) string {
		p := filepath.Join(dir, "."+base+"."+hex+".convertro-etl.tmp")
		if err := os.WriteFile(p, []byte("part of a killed run's requests"), 0o644); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := temp("requests.jsonl", "0123456789abcdef", 2*time.Hour)
	young := temp("requests.jsonl", "fedcba9876543210", time.Minute)
	other := temp("other.jsonl", "0123456789abcdef", 2*time.Hour)
	names := func() []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, filepath.Join(dir, e.Name()))
		}
		slices.Sort(got)
		return got
	}

	ctx := context.Background()
	o := testOptions(src, "", "")
	o.OnBadFile, o.DryRun, o.Out = "fail", true, out
	if _, err := Run(ctx, o, testEnv(t)); !errors.Is(err, readers.ErrBadFile) {
		t.Fatalf("dry run over a corrupt row group: %v, want a bad file", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "the last good run's requests\n" {
		t.Errorf("a failed dry run changed %s: %q", out, got)
	}
	want := []string{young, other, out}
	slices.Sort(want)
	if got := names(); !slices.Equal(got, want) {
		t.Errorf("after the failed dry run, the folder holds %q, want %q (the stale temporary file removed, no new one)", got, want)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed run's %s is still there: %v", stale, err)
	}

	o.OnBadFile = "skip"
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := int64(strings.Count(string(got), "\n")); lines == 0 || lines != rep.RequestsThisRun {
		t.Errorf("%s holds %d lines, the report %d requests", out, lines, rep.RequestsThisRun)
	}
	if got := names(); !slices.Equal(got, want) {
		t.Errorf("after the dry run, the folder holds %q, want %q", got, want)
	}

	link := filepath.Join(dir, "latest.jsonl")
	if err := os.Symlink(out, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	o.Out = link
	rep, err = Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatalf("dry run to %s: %v", link, err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a link: %v", link, err)
	}
	// (Which rows of the corrupt file come before it is found bad depends
	// on the decoders' timing: the report says how many requests.)
	got, err = os.ReadFile(out)
	if lines := int64(strings.Count(string(got), "\n")); err != nil || lines == 0 || lines != rep.RequestsThisRun {
		t.Errorf("the link's target after a dry run through it: %d lines (%v), the report %d requests", lines, err, rep.RequestsThisRun)
	}
}
