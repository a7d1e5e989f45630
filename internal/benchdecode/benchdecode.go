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
// nothing with the rows, and returns how many it read. As the job does, it
// reads every footer first, then opens each object again while its row
// groups are decoded and closes it after the last: holding every object open
// to the end would make the reference pay for memory the job never holds.
func DecodeAll(ctx context.Context, dir string) (int64, error) {
	src, err := readers.OpenSource(ctx, dir, readers.SourceOptions{})
	if err != nil {
		return 0, err
	}
	l, err := src.Scan(ctx)
	if err != nil {
		return 0, err
	}
	objects := make([]*object, len(l.Objects))
	type unit struct {
		o  *object
		rg int
	}
	var units []unit
	for i, obj := range l.Objects {
		o := &object{src: src, obj: obj}
		pf, err := o.acquire(ctx)
		if err != nil {
			return 0, err
		}
		o.left = len(pf.RowGroups())
		o.close()
		objects[i] = o
		for rg := range o.left {
			units = append(units, unit{o, rg})
		}
	}
	defer func() {
		for _, o := range objects {
			o.close()
		}
	}()
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
				pf, err := u.o.acquire(ctx)
				if err == nil {
					err = pf.ReadRowGroup(ctx, u.rg, readers.DefaultBatchSize, func(_ int64, b []segment.Message) error {
						total.Add(int64(len(b)))
						return nil
					})
				}
				if err != nil {
					once.Do(func() { first = err })
					return
				}
				u.o.done()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return total.Load(), nil
}

// object is one listed object, open while some of its row groups are left.
type object struct {
	src  *readers.Source
	obj  readers.Object
	mu   sync.Mutex
	f    readers.File
	pf   *readers.ParquetFile
	left int // row groups not yet read
}

// acquire opens the object and reads its footer, unless it is open.
func (o *object) acquire(ctx context.Context) (*readers.ParquetFile, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pf != nil {
		return o.pf, nil
	}
	f, err := o.src.Open(ctx, o.obj)
	if err != nil {
		return nil, err
	}
	pf, err := readers.OpenParquet(ctx, f, o.obj, readers.Hint{})
	if err != nil {
		f.Close()
		return nil, err
	}
	o.f, o.pf = f, pf
	return pf, nil
}

// done counts a row group read, and closes the object after its last.
func (o *object) done() {
	o.mu.Lock()
	o.left--
	last := o.left == 0
	o.mu.Unlock()
	if last {
		o.close()
	}
}

func (o *object) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f != nil {
		o.f.Close()
		o.f, o.pf = nil, nil
	}
}
