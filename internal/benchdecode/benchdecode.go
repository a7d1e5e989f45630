// Package benchdecode is the reference the benchmarks measure the dry run
// against: the job's reader alone over an export, with nothing after it.
// Errors are the reader's, naming the object; DecodeAll is safe to call
// concurrently.
package benchdecode

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/readers"
)

// DecodeAll reads every row group of the export at dir with the job's
// reader, batch size and parallelism (GOMAXPROCS row groups at once), does
// nothing with the rows, and returns how many it read.
func DecodeAll(ctx context.Context, dir string) (int64, error) {
	src, err := readers.OpenSource(ctx, dir, readers.SourceOptions{})
	if err != nil {
		return 0, err
	}
	l, err := src.Scan(ctx)
	if err != nil {
		return 0, err
	}
	type unit struct {
		pf *readers.ParquetFile
		rg int
	}
	var (
		units []unit
		files []readers.File
	)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, obj := range l.Objects {
		f, err := src.Open(ctx, obj)
		if err != nil {
			return 0, err
		}
		files = append(files, f)
		pf, err := readers.OpenParquet(ctx, f, obj, readers.Hint{})
		if err != nil {
			return 0, err
		}
		for i := range pf.RowGroups() {
			units = append(units, unit{pf, i})
		}
	}
	var (
		next, total atomic.Int64
		wg          sync.WaitGroup
		once        sync.Once
		first       error
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(units) {
					return
				}
				u := units[i]
				err := u.pf.ReadRowGroup(ctx, u.rg, readers.DefaultBatchSize, func(_ int64, b []segment.Message) error {
					total.Add(int64(len(b)))
					return nil
				})
				if err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return total.Load(), nil
}
