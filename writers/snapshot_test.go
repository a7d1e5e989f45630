package writers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func TestMembershipsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshot.parquet")
	w, err := CreateMemberships(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var want []Membership
	for i := range 2500 {
		m := Membership{UserID: fmt.Sprintf("u%d", i), Audience: "high_value", Member: i%3 != 0, DeviceID: fmt.Sprintf("d%d", i), TS: int64(1700000000 + i)}
		want = append(want, m)
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is at its path before Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pf.RowGroups()); n != 3 {
		t.Errorf("%d row groups, want 3 of at most 1000 rows", n)
	}
	got, err := parquet.ReadFile[Membership](path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestMembershipsAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := CreateMemberships(filepath.Join(dir, "s.parquet"), 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(Membership{UserID: "u"})
	w.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("abort left %d files", len(ents))
	}
}
