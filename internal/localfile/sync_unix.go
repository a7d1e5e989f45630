//go:build !windows

package localfile

import "os"

// SyncDir makes the entries of folder dir (a rename into it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
