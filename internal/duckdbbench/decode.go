package main

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/readers"
)

// decodeOnly reads every row group of dir with the job's reader, batch size
// and parallelism (GOMAXPROCS row groups at once) and does nothing with
// the rows: what the dry run costs before it maps, encodes and writes, and
// the reader's own rate beside DuckDB's scan of the same columns.
func decodeOnly(ctx context.Context, dir string) (int64, rate, error) {
	return timed(func() (int64, error) { return decodeAll(ctx, dir) })
}

func decodeAll(ctx context.Context, dir string) (int64, error) {
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
