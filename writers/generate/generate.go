package generate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/convertro-etl/convertro-etl/internal/localfile"
	"github.com/parquet-go/parquet-go"
)

// ErrInvalidOptions is wrapped by Generate when the options cannot describe
// an export; the message names the option.
var ErrInvalidOptions = errors.New("invalid generate options")

// Options describe one synthetic export.
type Options struct {
	Out  string // output folder, created if missing
	Rows int    // rows in all, over every table
	Seed int64  // same seed and options, byte-identical files
	// Layout is warehouse (default), datalake, upper or nested.
	Layout string
	// Start is the first day (UTC), default 2024-01-01.
	Start time.Time
	// Days is the number of daily partitions, default 2.
	Days int
	// RowGroupRows is the number of rows per row group, default 10 000.
	RowGroupRows int
}

// Summary says what Generate wrote.
type Summary struct {
	Files int
	Rows  map[string]int64 // by table folder name as written
	Bytes int64
}

// Defaults.
const (
	DefaultDays         = 2
	DefaultRowGroupRows = 10_000
	// rowGroupsPerFile is how many full row groups a file holds before the
	// next rows go to a new shard (000000000001.parquet, part-00001.parquet),
	// the way exports split large partitions.
	rowGroupsPerFile = 4
	// batchRows is how many rows are queued before they are encoded.
	batchRows = 256
)

// DefaultStart is the first day when Options.Start is zero.
var DefaultStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func (o Options) normalize(forWrite bool) (Options, error) {
	if o.Layout == "" {
		o.Layout = LayoutWarehouse
	}
	switch o.Layout {
	case LayoutWarehouse, LayoutDatalake, LayoutUpper, LayoutNested:
	default:
		return o, fmt.Errorf("%w: layout %q: want warehouse, datalake, upper or nested", ErrInvalidOptions, o.Layout)
	}
	if forWrite && o.Out == "" {
		return o, fmt.Errorf("%w: no output folder", ErrInvalidOptions)
	}
	if o.Rows < 0 {
		return o, fmt.Errorf("%w: rows %d is negative", ErrInvalidOptions, o.Rows)
	}
	if o.Days < 0 || o.RowGroupRows < 0 {
		return o, fmt.Errorf("%w: days %d and row group rows %d must not be negative", ErrInvalidOptions, o.Days, o.RowGroupRows)
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	s := o.Start.UTC()
	o.Start = time.Date(s.Year(), s.Month(), s.Day(), 0, 0, 0, 0, time.UTC)
	if o.Days == 0 {
		o.Days = DefaultDays
	}
	if o.RowGroupRows == 0 {
		o.RowGroupRows = DefaultRowGroupRows
	}
	return o, nil
}

// Generate writes the export o describes under o.Out and says what it
// wrote. Folders are written by up to GOMAXPROCS goroutines at once; each
// folder's content depends only on the options, so the files are the same
// whatever the scheduling.
func Generate(ctx context.Context, o Options) (Summary, error) {
	o, err := o.normalize(true)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Rows: map[string]int64{}}
	units := folderUnits(o)
	workers := min(runtime.GOMAXPROCS(0), len(units))
	var (
		mu   sync.Mutex
		next int
	)
	eg, ctx := errgroup.WithContext(ctx)
	for range workers {
		eg.Go(func() error {
			local := Summary{Rows: map[string]int64{}}
			defer func() {
				mu.Lock()
				sum.Files += local.Files
				sum.Bytes += local.Bytes
				for k, v := range local.Rows {
					sum.Rows[k] += v
				}
				mu.Unlock()
			}()
			g := newGenerator(o)
			w := &writer{o: o, sum: &local, schemas: map[variant]*fileSchema{}}
			defer w.abort()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(units) {
					return nil
				}
				if err := w.writeUnit(ctx, g, units[i]); err != nil {
					return err
				}
			}
		})
	}
	err = eg.Wait()
	return sum, err
}

// folderUnits groups the partitions by the folder they are written to: one
// partition per folder, except in the nested layout (one folder a day).
func folderUnits(o Options) [][]partition {
	var units [][]partition
	last := ""
	for _, p := range partitions(o) {
		dir := folderOf(o, p).dir
		if len(units) > 0 && dir == last {
			units[len(units)-1] = append(units[len(units)-1], p)
			continue
		}
		units = append(units, []partition{p})
		last = dir
	}
	return units
}

// writeUnit writes the files of one folder.
func (w *writer) writeUnit(ctx context.Context, g *generator, parts []partition) error {
	for _, p := range parts {
		g.begin(p)
		if err := w.begin(ctx, p); err != nil {
			return err
		}
		for range p.rows {
			if w.o.Layout != LayoutNested && w.rows >= rowGroupsPerFile*w.o.RowGroupRows {
				if err := w.nextShard(ctx); err != nil {
					return err
				}
			}
			g.next(w.slot())
			if err := w.add(ctx); err != nil {
				return err
			}
		}
	}
	return w.close()
}

// folder is the file group a partition's rows go to, and the layout's names.
type folder struct {
	dir   string // relative to Out, slash-separated
	table string // table folder name as written
	name  func(shard int) string
}

func folderOf(o Options, p partition) folder {
	t := p.table
	day := o.Start.AddDate(0, 0, p.day).Format(time.DateOnly)
	hr := fmt.Sprintf("hr=%02d", p.hour)
	switch o.Layout {
	case LayoutDatalake:
		name := TableName(o.Layout, t.name)
		return folder{
			dir:   name + "/segment_type=" + t.typ.String() + "/day=" + day + "/" + hr,
			table: name,
			name:  func(s int) string { return fmt.Sprintf("part-%05d.parquet", s) },
		}
	case LayoutNested:
		return folder{
			dir:   t.name + "/dt=" + day,
			table: t.name,
			name:  func(s int) string { return fmt.Sprintf("part-%05d.snappy.parquet", s) },
		}
	}
	return folder{
		dir:   t.name + "/day=" + day + "/" + hr,
		table: t.name,
		name:  func(s int) string { return fmt.Sprintf("%012d.parquet", s) },
	}
}

func variantOf(o Options, p partition) variant {
	if o.Layout == LayoutNested {
		return variant{table: p.ti, integrations: p.table.integrations}
	}
	return variant{
		table:        p.ti,
		integrations: carriesIntegrations(p.table, p.day, p.hour),
		textMoney:    o.Layout == LayoutWarehouse && p.table.name == "order_completed" && p.day == 1,
	}
}

// writer streams rows into one open file at a time, one row group at a
// time: memory is bounded by a row group's encoded pages.
type writer struct {
	o       Options
	sum     *Summary
	schemas map[variant]*fileSchema

	dir   string
	made  string // the last folder created
	fold  folder
	shard int
	fs    *fileSchema
	f     *localfile.File
	final string
	pw    *parquet.Writer
	rows  int // rows in the open file
	inRG  int // rows in the current row group

	batch []Event // rows waiting to be encoded, column by column
	vals  []parquet.Value
	arena rowArena
}

// begin prepares for partition p's rows: the open file goes on when p
// belongs to the same file (the nested layout's day files), else the next
// file opens.
func (w *writer) begin(ctx context.Context, p partition) error {
	fold := folderOf(w.o, p)
	v := variantOf(w.o, p)
	fs := w.schemas[v]
	if fs == nil {
		if w.o.Layout == LayoutNested {
			fs = nestedSchema(p.table, v)
		} else {
			fs = flatSchema(w.o.Layout, p.table, v)
		}
		w.schemas[v] = fs
	}
	if w.pw != nil && fold.dir == w.dir && fs == w.fs {
		return nil
	}
	if err := w.close(); err != nil {
		return err
	}
	w.dir, w.fold, w.fs, w.shard = fold.dir, fold, fs, 0
	return w.open(ctx)
}

// nextShard continues the partition in a new file.
func (w *writer) nextShard(ctx context.Context) error {
	if err := w.close(); err != nil {
		return err
	}
	w.shard++
	return w.open(ctx)
}

func (w *writer) open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(w.o.Out, filepath.FromSlash(w.dir))
	name := w.fold.name(w.shard)
	w.final = filepath.Join(dir, name)
	if dir != w.made {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		w.made = dir
	}
	f, err := localfile.Create(w.final)
	if err != nil {
		return fmt.Errorf("create %s: %w", w.final, err)
	}
	w.f = f
	opts := append([]parquet.WriterOption{w.fs.schema,
		parquet.Compression(snappyCodec{}),
		parquet.PageBufferSize(128 << 10),
		parquet.WriteBufferSize(128 << 10),
		parquet.CreatedBy("convertro-etl generate", "1", ""),
	}, w.fs.noBounds...)
	w.pw = parquet.NewWriter(f, opts...)
	w.rows, w.inRG = 0, 0
	return nil
}

// slot returns the place of the next row in the batch, for the generator
// to fill in place; add then counts it.
func (w *writer) slot() *Event {
	if w.batch == nil {
		w.batch = make([]Event, 0, batchRows)
	}
	w.batch = w.batch[:len(w.batch)+1]
	return &w.batch[len(w.batch)-1]
}

// add counts the row filled in slot, flushing batches and row groups.
func (w *writer) add(ctx context.Context) error {
	w.rows++
	w.inRG++
	if len(w.batch) >= batchRows || w.inRG >= w.o.RowGroupRows {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.flushBatch(); err != nil {
			return err
		}
	}
	if w.inRG >= w.o.RowGroupRows {
		if err := w.pw.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", w.final, err)
		}
		w.inRG = 0
	}
	return nil
}

// flushBatch encodes the queued rows one column at a time straight into
// the column writers: no row-to-column transposition.
func (w *writer) flushBatch() error {
	if len(w.batch) == 0 {
		return nil
	}
	cols := w.pw.ColumnWriters()
	for i := range w.fs.cols {
		w.vals = w.fs.appendColumn(w.vals[:0], i, w.batch, &w.arena)
		if _, err := cols[i].WriteRowValues(w.vals); err != nil {
			return fmt.Errorf("write %s column %s: %w", w.final, w.fs.cols[i].path, err)
		}
	}
	clear(w.vals)
	clear(w.batch) // drop references to the string arena
	w.batch = w.batch[:0]
	w.arena.b = w.arena.b[:0]
	return nil
}

// close completes the open file, if any, and renames it into place.
func (w *writer) close() error {
	if w.pw == nil {
		return nil
	}
	err := w.flushBatch()
	if err == nil {
		if err = w.pw.Close(); err != nil {
			err = fmt.Errorf("write %s: %w", w.final, err)
		}
	}
	var size int64
	if err == nil {
		var st os.FileInfo
		if st, err = w.f.Stat(); err == nil {
			size = st.Size()
		}
	}
	if err != nil {
		w.f.Abort()
	} else if err = w.f.Commit(false); err != nil { // generated data: no fsync
		err = fmt.Errorf("close %s: %w", w.final, err)
	}
	w.pw, w.f = nil, nil
	if err != nil {
		return err
	}
	w.sum.Files++
	w.sum.Bytes += size
	w.sum.Rows[w.fold.table] += int64(w.rows)
	return nil
}

// abort removes a file left open by an error or a cancellation.
func (w *writer) abort() {
	if w.pw == nil {
		return
	}
	w.f.Abort()
	w.pw, w.f = nil, nil
}

// TableName is the table folder a layout writes a warehouse table under
// ("order_completed" is "track_order_completed" in datalake).
func TableName(layout, table string) string {
	if layout == LayoutDatalake && table != "identifies" && table != "pages" && table != "tracks" {
		return "track_" + table
	}
	return table
}
