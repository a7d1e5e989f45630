package localfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCommitAndAbort: a file is at its path only once committed, replacing
// what was there; an aborted one leaves nothing; the temporary file in
// between is one IsTemp knows.
func TestCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.parquet")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	if !IsTemp(filepath.Base(f.Name())) || filepath.Dir(f.Name()) != dir {
		t.Errorf("temporary file %s: not in the folder, or not one IsTemp knows", f.Name())
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("before Commit the path holds %q", b)
	}
	if err := f.Commit(true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("after Commit the path holds %q", b)
	}
	f.Abort() // after Commit: nothing
	if err := f.Commit(true); err == nil {
		t.Error("a second Commit succeeded")
	}

	g, err := Create(filepath.Join(dir, "g"))
	if err != nil {
		t.Fatal(err)
	}
	g.Abort()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "f.parquet" {
		t.Errorf("the folder holds %v, want f.parquet alone", entries)
	}
	for _, name := range []string{"f.parquet", ".convertro-etl.tmp", "x" + TempSuffix, ".f.tmp"} {
		if IsTemp(name) {
			t.Errorf("IsTemp(%q)", name)
		}
	}
}
