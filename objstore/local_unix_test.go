//go:build unix

package objstore

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Local objects take the modes the umask allows: 0666 and 0777 less it.
func TestLocalHonoursUmask(t *testing.T) {
	for _, tc := range []struct {
		umask     int
		file, dir os.FileMode
	}{
		{umask: 0o077, file: 0o600, dir: 0o700},
		{umask: 0o022, file: 0o644, dir: 0o755},
	} {
		old := syscall.Umask(tc.umask)
		root := filepath.Join(t.TempDir(), "state")
		st, err := Open(context.Background(), root)
		if err == nil {
			_, err = st.Write(context.Background(), "dead-letters/part-1.parquet", []byte("x"), IfAbsent)
		}
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]os.FileMode{
			root: tc.dir, filepath.Join(root, "dead-letters"): tc.dir,
			filepath.Join(root, "dead-letters", "part-1.parquet"): tc.file,
			filepath.Join(root, lockName):                         tc.file,
		} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("umask %03o: %s has mode %03o, want %03o", tc.umask, p, got, want)
			}
		}
	}
}
