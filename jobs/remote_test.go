package jobs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestMain(m *testing.M) { os.Exit(objstoretest.Main(m)) }

// remoteBackends are the object stores the end-to-end tests run on, each a
// real emulator process reached by the real SDK client: a call returns the
// root of a new bucket.
var remoteBackends = map[string]func(testing.TB) string{
	"gcs":   objstoretest.GCS,
	"azure": objstoretest.Azure,
	"s3":    objstoretest.S3,
}

// putTree copies the local folder dir to root/prefix, object for object.
func putTree(t testing.TB, dir, root string) {
	t.Helper()
	st, err := objstore.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = st.Write(context.Background(), filepath.ToSlash(rel), data, objstore.Overwrite)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readObject reads one object at uri's folder; ok is false when it is absent.
func readObject(t testing.TB, root, key string) (data []byte, ok bool) {
	t.Helper()
	st, err := objstore.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	data, _, err = st.Read(context.Background(), key)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return data, true
}

// listKeys lists root's keys under prefix.
func listKeys(t testing.TB, root, prefix string) []string {
	t.Helper()
	st, err := objstore.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.ListKeys(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
