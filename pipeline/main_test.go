package pipeline

import (
	"os"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestMain(m *testing.M) {
	// The runs here commit as fast as their clocks allow: pacing writes
	// to one a second per name is the storage layer's, tested there.
	objstore.MinWriteInterval = 0
	os.Exit(objstoretest.Main(m))
}
