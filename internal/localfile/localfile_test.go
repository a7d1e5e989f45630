package localfile

import (
	"os"
	"path/filepath"
	"runtime"
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

// TestOutput: at a regular path (or none) the output appears whole at
// Finish(true), and Finish(false) leaves what was there; through a symbolic
// link it is written in place, the link kept. (A device takes the same way
// as a link; it is not tested on the system's /dev/null, which a fault here
// would replace when the tests run as root.)
func TestOutput(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(path, data string, ok bool) {
		t.Helper()
		o, err := CreateOutput(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		if err := o.Finish(ok); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write(p, "partial", false)
	if got := read(p); got != "old" {
		t.Errorf("after Finish(false), %q", got)
	}
	// A file the user made readable by fewer people stays so.
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	write(p, "new", true)
	if got := read(p); got != "new" {
		t.Errorf("after Finish(true), %q", got)
	}
	if st, err := os.Stat(p); err != nil || (runtime.GOOS != "windows" && st.Mode().Perm() != 0o640) {
		t.Errorf("the file replaced has mode %v (%v), want the old file's -rw-r-----", st.Mode().Perm(), err)
	}
	link := filepath.Join(dir, "latest.json")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	write(link, "through the link", true)
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a link: %v", link, err)
	}
	if got := read(p); got != "through the link" {
		t.Errorf("the link's target holds %q", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 2 {
		t.Errorf("the folder holds %d entries (%v), want the file and the link", len(entries), err)
	}
}
