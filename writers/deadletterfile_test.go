package writers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestDeadLetterWriterRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dead-letters-run1-1.parquet")
	w, err := CreateDeadLetters(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.FixedZone("CET", 3600))
	want := []DeadLetter{
		{MessageID: "m1", Object: "gs://b/tracks/day=2024-01-01/hr=00/000000000000.parquet", RowGroup: 3, Row: 9_000_000_001,
			URL: "https://sp1.convertro.com/api/hit/acme/1/?sid=d&typ=sale&val=1&eid=o&ts=1", Status: 400,
			Response: "missing sid", Reason: "permanent", Attempts: 1, Time: at},
		{MessageID: "", Object: "o", URL: "u", Status: 404, Attempts: 5, Time: at.Add(time.Millisecond)},
	}
	for _, d := range want {
		if err := w.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file at %s before Close (err %v): a killed run would leave a half file", path, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := w.Write(want[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	got, err := ReadDeadLetters(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].Time = want[i].Time.UTC()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries after Close, want only the file", len(entries))
	}
}

func TestDeadLetterWriterConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead-letters-run1-2.parquet")
	w, err := CreateDeadLetters(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				if err := w.Write(DeadLetter{Object: fmt.Sprint("o", g), Row: int64(i), Status: 400}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDeadLetters(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each {
		t.Fatalf("read %d rows, want %d", len(got), writers*each)
	}
	seen := map[string]int{}
	for _, d := range got {
		seen[d.Object]++
	}
	for g := range writers {
		if n := seen[fmt.Sprint("o", g)]; n != each {
			t.Errorf("writer %d: %d rows, want %d", g, n, each)
		}
	}
}

func TestDeadLetterWriterAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := CreateDeadLetters(filepath.Join(dir, "dead-letters-r-1.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(DeadLetter{Object: "o"}); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("folder holds %v after Abort, want nothing", entries)
	}
}

func TestCreateDeadLettersInMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "dead-letters-r-1.parquet")
	if _, err := CreateDeadLetters(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CreateDeadLetters in a missing folder = %v, want ErrNotExist", err)
	}
}

func TestListDeadLetters(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"dead-letters-b-1.parquet", "dead-letters-a-2.parquet", "dead-letters-a-10.parquet",
		"dead-letters-a-3.parquet.123.tmp", "manifest-0-of-1.json", "other.parquet"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "dead-letters-dir.parquet"), 0o755)
	got, err := ListDeadLetters(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range []string{"dead-letters-a-10.parquet", "dead-letters-a-2.parquet", "dead-letters-b-1.parquet"} {
		want = append(want, filepath.Join(dir, n))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListDeadLetters = %v, want %v", got, want)
	}
	if got, err := ListDeadLetters(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("missing folder: %v, %v; want nothing and no error", got, err)
	}
	if _, err := ReadDeadLetters(filepath.Join(dir, "dead-letters-b-1.parquet")); err == nil {
		t.Error("reading an empty file as dead letters succeeded")
	}
}
