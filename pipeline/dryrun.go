package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// The dry run: every unit decoded and transformed in parallel, the requests
// written in plan order, nothing sent and no state touched.

// unitOutput is one unit's dry-run lines and counts. The unit's worker
// hands each filled chunk over as it goes, and the ordered writer writes
// the chunks of the unit whose turn it is as they come: the unit being
// written never holds its whole output, and its chunks go back to the
// free list while still in the cache. Units further on keep theirs until
// their turn.
type unitOutput struct {
	mu     sync.Mutex
	chunks [][]byte // filled, not yet taken by the writer; in order
	done   bool     // no more chunks; the fields below are set
	wake   chan struct{}

	counts Counts
	// partial: the unit's object was set aside; seen rows were read (and
	// their lines kept), bad is the reason when this unit found it.
	partial bool
	seen    int64
	bad     string
}

func newUnitOutput() *unitOutput { return &unitOutput{wake: make(chan struct{}, 1)} }

// push hands over a filled chunk (nil: none) and, when done, the unit's end.
func (o *unitOutput) push(chunk []byte, done bool) {
	o.mu.Lock()
	if len(chunk) > 0 {
		o.chunks = append(o.chunks, chunk)
	}
	o.done = o.done || done
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take moves the chunks handed over so far into buf, waiting for one or
// for the unit's end; done says the unit has no more.
func (o *unitOutput) take(ctx context.Context, buf [][]byte) ([][]byte, bool, error) {
	for {
		o.mu.Lock()
		buf = append(buf, o.chunks...)
		clear(o.chunks)
		o.chunks = o.chunks[:0]
		done := o.done
		o.mu.Unlock()
		if len(buf) > 0 || done {
			return buf, done, nil
		}
		select {
		case <-o.wake:
		case <-ctx.Done():
			return buf, false, context.Cause(ctx)
		}
	}
}

// A unit's dry-run lines are kept in fixed-size chunks that the writer
// gives back for reuse once written: lines are never copied to grow a
// buffer, and the memory held stays the lines waiting for their turn (a
// buffer per unit, reused, would hold every unit's largest size for good).
// A row starts a new chunk when less than dryChunkRoom is left, so that a
// row's lines share one chunk and can be cut off again; a longer row grows
// its chunk, which is then left to the collector rather than reused.
const (
	dryChunk     = 256 << 10
	dryChunkRoom = 16 << 10
	// dryFreeChunks bounds the free list, per decoder. Measured on 4M
	// rows: two chunks a decoder save most allocations; a free list deep
	// enough for the whole window (32 MiB) saved no CPU and raised the
	// peak RSS by half, as the collector then ran rarely and let the
	// heap grow.
	dryFreeChunks = 2
)

// dryLines returns an empty chunk: a recycled one if the writer has given
// one back, else a new one.
func dryLines(free <-chan []byte) []byte {
	select {
	case b := <-free:
		return b
	default:
		return make([]byte, 0, dryChunk)
	}
}

// recycleDryLines offers a chunk for reuse; it never blocks: a full free
// list drops the chunk.
func recycleDryLines(free chan<- []byte, b []byte) {
	if cap(b) != dryChunk {
		return
	}
	select {
	case free <- b[:0]:
	default:
	}
}

// runDry decodes and transforms every unit of the shard in parallel, and
// writes the requests in plan order: each unit's lines are buffered until
// its turn, then streamed by an ordered writer. At most 2×Decoders units
// are between dispatch and write, which bounds the buffered output, and
// at most dryBacklog (and the segment being added) between plan and
// write, which bounds the plan held.
func runDry(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	started := deps.Now()
	// The dry run's manifest holds only its counts: what the report reads
	// of objects and units comes from the view (dryPlan), so that a run
	// over many objects holds each once, and only until it is written.
	// Objects found bad meanwhile wait in foundBad.
	m := newManifest(Config{Job: cfg.Job, Shard: cfg.Shard, Window: cfg.Window, CoveredFrom: cfg.CoveredFrom, Tables: cfg.Tables})
	m.Status = StatusDryRun
	units := ShardUnits(BuildPlan(cfg.Objects), cfg.Objects, cfg.Shard)
	m.Counts.ObjectsSkipped = skippedObjects(cfg.Objects)
	nobj := len(cfg.Objects)
	foundBad := map[int]string{}
	prog := newProgress(deps.OnProgress, deps.Now, cfg.ProgressInterval, PlanRows(units)+cfg.PlannedRows, 0)
	prog.start()
	// The units as the plan grows (Deps.Planner); mu guards m's counts,
	// which the planner adds to while the writer counts the units written.
	view := newPlanView(slices.Clip(cfg.Objects), units, deps.Planner == nil)
	var mu sync.Mutex
	// What the report reads of the plan: the segments the writer passed,
	// tallied, then the view's others and how far the writer got.
	plan := newDryPlan(view, foundBad)

	g, gctx := errgroup.WithContext(ctx)
	turns := semaphore.NewWeighted(int64(2 * cfg.Decoders))
	type dispatched struct {
		ui  int
		out *unitOutput
	}
	unitCh := make(chan dispatched)
	// The units in plan order, for the writer; the turns bound them.
	order := make(chan *unitOutput, 2*cfg.Decoders)
	// The writer hands written chunks back to the decoders, so that a run
	// reuses a handful of buffers instead of growing a fresh one, copy
	// after copy, for every unit.
	free := make(chan []byte, dryFreeChunks*cfg.Decoders)
	if deps.Planner != nil {
		g.Go(func() error {
			err := deps.Planner(gctx, func(objs []Object) error {
				if len(objs) == 0 {
					return nil
				}
				if err := plan.admit(gctx); err != nil {
					return err
				}
				mu.Lock()
				s := newSegment(objs, nobj, cfg.Shard)
				nobj += len(objs)
				m.Counts.ObjectsSkipped += skippedObjects(s.objs)
				mu.Unlock()
				if cfg.PlannedRows == 0 {
					prog.grow(s.rows)
				}
				view.add(s.objs, s.units)
				return nil
			})
			if err != nil {
				return fmt.Errorf("plan shard %s: %w", cfg.Shard, err)
			}
			view.finish()
			return nil
		})
	}
	g.Go(func() error {
		defer close(unitCh)
		defer close(order)
		for i := 0; ; i++ {
			if ok, err := view.wait(gctx, i); err != nil || !ok {
				return err
			}
			// Taken in plan order and given back in plan order by the
			// writer: a slow unit holds back at most the window behind it.
			if err := turns.Acquire(gctx, 1); err != nil {
				return err
			}
			out := newUnitOutput()
			order <- out // never blocks: the turns bound the units in it
			if err := put(gctx, unitCh, dispatched{i, out}); err != nil {
				return err
			}
		}
	})
	var bad badObjects
	for range cfg.Decoders {
		g.Go(func() error {
			tf := deps.NewTransform()
			// A row's lines go straight into its unit's current chunk; a
			// row that turns out skipped after emitting is cut off again.
			var lines []byte
			var nurls, ndead int64
			emit := func(u []byte) {
				if cfg.MaxURLBytes > 0 && len(u) > cfg.MaxURLBytes {
					ndead++ // a live run dead-letters it unsent: not listed
					return
				}
				lines = deps.DryRunLine(lines, u)
				nurls++
			}
			for d := range unitCh {
				out := d.out
				u, obj := view.at(d.ui)
				if bad.has(u.Object) || obj.Skipped != "" {
					out.partial = true
					out.push(nil, true)
					continue
				}
				var seen int64
				lines = dryLines(free)
				err := deps.Decoder.Decode(gctx, obj, u.RowGroup, func(_ int64, batch []segment.Message, skip []string) error {
					var reqs int64 // progress is told once a batch, not once a row
					for i := range batch {
						seen++
						if cap(lines)-len(lines) < dryChunkRoom {
							out.push(lines, false)
							lines = dryLines(free)
						}
						mark := len(lines)
						nurls, ndead = 0, 0
						var reason string
						if skip != nil {
							reason = skip[i]
						}
						if reason == "" {
							reason = tf(&batch[i], emit)
						}
						if reason == "" && nurls+ndead == 0 {
							reason = SkipNoRequests
						}
						if reason != "" {
							lines = lines[:mark]
							addRow(&out.counts, reason, rowTally{})
							continue
						}
						addRow(&out.counts, "", rowTally{acked: nurls, dead: ndead})
						reqs += nurls + ndead
					}
					prog.add(int64(len(batch)), reqs)
					return nil
				})
				if len(lines) == 0 {
					recycleDryLines(free, lines)
					lines = nil
				}
				switch aside, first, err := bad.settle(gctx, err, obj, u, seen, deps.Logger); {
				case aside:
					out.partial, out.seen = true, seen
					if first {
						out.bad = err.Error()
					}
				case err != nil:
					return err
				}
				out.push(lines, true)
				lines = nil
			}
			return nil
		})
	}
	g.Go(func() error { // the ordered writer
		bw := bufio.NewWriterSize(deps.DryRun, 64<<10)
		var chunks [][]byte
		for p := range order {
			next := plan.written // the writer's own: no lock
			for done := false; !done; {
				var err error
				if chunks, done, err = p.take(gctx, chunks[:0]); err != nil {
					return err
				}
				for i, c := range chunks {
					if _, err := bw.Write(c); err != nil {
						return fmt.Errorf("write dry run: %w", err)
					}
					recycleDryLines(free, c)
					chunks[i] = nil
				}
			}
			mu.Lock()
			m.Counts.Add(p.counts)
			if p.partial {
				plan.partial[next] = p.seen
				u, obj := view.at(next)
				if _, found := foundBad[u.Object]; p.bad != "" && !found && obj.Skipped == "" {
					foundBad[u.Object] = p.bad
					m.Counts.ObjectsSkipped++
				}
			}
			mu.Unlock()
			turns.Release(1)
			plan.wrote()
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write dry run: %w", err)
		}
		return nil
	})
	err := g.Wait()
	prog.stop()
	rep := reportOf(m, plan, cfg, started, deps.Now(), Counts{})
	rep.Status = StatusDryRun
	if err != nil {
		rep.Status = StatusFailed
		if ctx.Err() != nil {
			rep.Status = StatusStopped
			err = fmt.Errorf("dry run shard %s: %w", cfg.Shard, ErrStopped)
		}
		rep.Error = err.Error()
		return rep, err
	}
	if err := checkCounts(m.Counts, rep.RowsMarked); err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	return rep, nil
}

// dryBacklog bounds the units a dry run's Planner may add ahead of the
// writer. A Planner may plan far faster than the decoders read rows (one
// that read every footer before the run hands its plan out at once), and
// the view holds a segment until it is written: unbounded, a large
// listing's plan would be held whole again, only later. The decoders take
// at most 2×Decoders units at a time, so a thousand units keep them fed,
// at a few hundred bytes of plan a unit. With 4,096, a dry run over
// 43,800 one-unit objects peaked 2-6 MiB higher.
const dryBacklog = 1024

// dryPlan is a dry run's plan as its report reads it (reportPlan): the
// view's objects, those found bad while read set aside, and its units,
// those before written marked: whole, or as far as partial says for a unit
// whose object was set aside.
//
// The segments the writer has passed are tallied into retired and dropped
// from the view as it goes (wrote): nothing reads them again, and holding
// them would make a dry run's memory grow with its plan.
type dryPlan struct {
	view *planView
	// bad (objects found bad while read), partial (the rows read of units
	// written whose object was set aside) and retired are the writer's, as
	// is written: the report reads them once the run is over. bad and
	// partial hold entries of the segments still in the view only.
	bad     map[int]string
	partial map[int]int64
	retired planTally

	mu      sync.Mutex
	written int           // units written, in plan order
	moved   chan struct{} // closed and replaced when written grows
}

func newDryPlan(view *planView, bad map[int]string) *dryPlan {
	return &dryPlan{view: view, bad: bad, partial: map[int]int64{}, moved: make(chan struct{})}
}

// wrote records that the writer has written the next unit. The segments
// now written whole are tallied and dropped before written says so: a
// Planner let through by the new count never adds its segment beside
// segments already written.
func (p *dryPlan) wrote() {
	n := p.written + 1
	for _, s := range p.view.retire(n) {
		p.tallySegment(&p.retired, s, n)
		end, uend := s.obj0+len(s.objs), s.unit0+len(s.units)
		maps.DeleteFunc(p.bad, func(i int, _ string) bool { return i < end })
		maps.DeleteFunc(p.partial, func(i int, _ int64) bool { return i < uend })
	}
	p.mu.Lock()
	p.written = n
	close(p.moved)
	p.moved = make(chan struct{})
	p.mu.Unlock()
}

// admit waits until at most dryBacklog units of the view are not written
// yet. A segment is then added whatever its size: the decoders need only
// the units already added, so the writer gets through the backlog without
// it, and a Planner never waits on itself.
func (p *dryPlan) admit(ctx context.Context) error {
	for {
		_, units := p.view.size()
		p.mu.Lock()
		written, moved := p.written, p.moved
		p.mu.Unlock()
		if units-written <= dryBacklog {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// tally is the segments retired, then the view's others: retire takes
// them from the front, so they stay in plan order.
func (p *dryPlan) tally(t *planTally) {
	t.add(p.retired)
	p.view.segments(func(s viewSegment) { p.tallySegment(t, s, p.written) })
}

// tallySegment adds segment s to t, the units before written written. A
// segment is tallied on its own: its units index only its own objects.
func (p *dryPlan) tallySegment(t *planTally, s viewSegment, written int) {
	t.addPlan(func(yield func(int, Object) bool) {
		for j, o := range s.objs {
			if reason, ok := p.bad[s.obj0+j]; ok {
				o.Skipped = reason
			}
			if !yield(s.obj0+j, o) {
				return
			}
		}
	}, func(yield func(UnitProgress) bool) {
		for j, u := range s.units {
			up := UnitProgress{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows}
			if i := s.unit0 + j; i < written {
				if seen, ok := p.partial[i]; ok {
					up.Watermark = seen
				} else {
					up.Watermark, up.Done = u.Rows, true
				}
			}
			if !yield(up) {
				return
			}
		}
	})
}
