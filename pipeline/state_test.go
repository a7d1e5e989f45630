package pipeline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

// stateStores are the state locations the lease and manifest tests run
// against: a temp folder and a bucket of the GCS emulator process (real
// client, real HTTP, real 412s). The storage layer's own conformance suite
// covers every backend; these check what pipeline builds on it.
var stateStores = []struct {
	name string
	open func(t *testing.T) StateStore
}{
	{"dir", newDirState},
	{"gcs", newGCSState},
}

func newDirState(t *testing.T) StateStore {
	t.Helper()
	st, err := OpenState(context.Background(), filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newGCSState(t *testing.T) StateStore {
	t.Helper()
	st, err := OpenState(context.Background(), objstoretest.GCS(t)+"/jobs/nightly")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustWrite(t *testing.T, st StateStore, name, data string, pre objstore.Precondition) string {
	t.Helper()
	v, err := st.Write(context.Background(), name, []byte(data), pre)
	if err != nil {
		t.Fatalf("Write(%s, %s): %v", name, pre, err)
	}
	if v == "" {
		t.Fatalf("Write(%s) returned no version", name)
	}
	return v
}
