package readers

import (
	"os"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestMain(m *testing.M) {
	// Every fetch's buffers are reused, not only those of 4 MiB or more,
	// which few test files reach: the suite, under the race detector,
	// then checks that no buffer is read once given back.
	minPooled = 1
	os.Exit(objstoretest.Main(m))
}
