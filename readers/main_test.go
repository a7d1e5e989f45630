package readers

import (
	"os"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestMain(m *testing.M) { os.Exit(objstoretest.Main(m)) }
