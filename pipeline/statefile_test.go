package pipeline

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestStateFiles runs the streaming extra of both stores: a file stored with
// WriteFile reads back the same with Read and ReadFile, at one generation,
// and WriteFile keeps Write's preconditions.
func TestStateFiles(t *testing.T) {
	for name, open := range map[string]func(*testing.T) StateStore{"dir": newDirState, "gcs": newGCSState} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, ok := open(t).(FileStateStore)
			if !ok {
				t.Fatal("store has no streaming methods")
			}
			dir := t.TempDir()
			src := filepath.Join(dir, "src.bin")
			data := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // over one upload chunk of 3 MB
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			gen, err := st.WriteFile(ctx, "audience/s.parquet", src, IfAbsent)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.WriteFile(ctx, "audience/s.parquet", src, IfAbsent); !errors.Is(err, ErrPrecondition) {
				t.Errorf("second IfAbsent WriteFile: err = %v, want ErrPrecondition", err)
			}
			if _, err := st.WriteFile(ctx, "audience/s.parquet", src, gen+1); !errors.Is(err, ErrPrecondition) {
				t.Errorf("WriteFile with a wrong generation: err = %v, want ErrPrecondition", err)
			}
			got, rgen, err := st.Read(ctx, "audience/s.parquet")
			if err != nil || !bytes.Equal(got, data) || rgen != gen {
				t.Fatalf("Read: %d bytes, gen %d (want %d), %v", len(got), rgen, gen, err)
			}
			dst := filepath.Join(dir, "dst.bin")
			fgen, err := st.ReadFile(ctx, "audience/s.parquet", dst)
			if err != nil || fgen != gen {
				t.Fatalf("ReadFile: gen %d (want %d), %v", fgen, gen, err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
				t.Errorf("ReadFile copied %d bytes, want %d equal ones", len(got), len(data))
			}
			if _, err := st.ReadFile(ctx, "audience/none.parquet", dst); !errors.Is(err, ErrStateNotFound) {
				t.Errorf("ReadFile of an absent object: err = %v, want ErrStateNotFound", err)
			}
			if _, err := st.WriteFile(ctx, "../x", src, Unconditional); err == nil {
				t.Error("WriteFile accepted an invalid name")
			}
		})
	}
}
