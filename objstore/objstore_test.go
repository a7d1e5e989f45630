package objstore_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestMain(m *testing.M) { os.Exit(objstoretest.Main(m)) }

func TestLocalConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) string { return filepath.Join(t.TempDir(), "root") })
}

func TestGCSConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) string { return objstoretest.GCS(t) + "/some/prefix" })
}
