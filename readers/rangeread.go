package readers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// How a row group's bytes are fetched. A remote store answers a ranged read
// after 20-50 ms whatever its size, so the column chunks a row group needs
// are read as few exact ranges, all at once, before it is decoded (and,
// when the caller asks, while the one before it decodes), instead of one
// 256 KiB read after another as the decoder asks for them.

// DefaultReadConcurrency is how many ranged reads a Source has in flight at
// once unless told otherwise: at 30 ms a read, enough for some 2,000 reads
// a second, which a few decoders of small row groups ask for; far below
// what GCS, S3 or Azure serve one client.
const DefaultReadConcurrency = 64

// maxGapWaste is the share of the needed bytes that merging neighbouring
// ranges may add: reading a gap costs bytes, a separate range a request.
const maxGapWaste = 0.05

// minGapBudget is what merging may add whatever the share: a remote read
// costs a request at both ends (CPU in the client and the server, and a
// charge per request) beside its time to first byte, and a row group of a
// small object whose mapped columns are not neighbours would otherwise be
// a request for each run of them. On the storage benchmark's export (168
// objects of 20-500 KB, 500-row groups) a dry run made 589 requests
// instead of 910, for 40.0 MB fetched instead of 35.9.
const minGapBudget = 128 << 10

// maxMergeGap is the largest gap merged, whatever the budget: beyond it a
// second request in parallel costs less than the bytes.
const maxMergeGap = 1 << 20

// maxFetchBytes is the most a row group's column chunks may take to be
// read whole before it is decoded, whatever the budget's share.
var maxFetchBytes int64 = 128 << 20

// maxRangePart is the largest single read: a larger range is split so that
// its parts come in parallel.
const maxRangePart = 8 << 20

// defaultSlots bounds the reads of Files not opened by a Source (tests).
var defaultSlots = make(chan struct{}, DefaultReadConcurrency)

// byteRange is [off, end) of an object.
type byteRange struct{ off, end int64 }

// coalesce sorts rs and merges the overlapping and touching ones, then the
// neighbours with the smallest gaps between them while the gaps read add at
// most maxGapWaste of the needed bytes (or minGapBudget) and none is larger
// than maxMergeGap, and splits what is larger than maxRangePart.
func coalesce(rs []byteRange) []byteRange {
	rs = slices.DeleteFunc(slices.Clone(rs), func(r byteRange) bool { return r.end <= r.off })
	slices.SortFunc(rs, func(a, b byteRange) int { return cmp.Compare(a.off, b.off) })
	var out []byteRange
	var need int64
	for _, r := range rs {
		if n := len(out); n > 0 && r.off <= out[n-1].end {
			if r.end > out[n-1].end {
				need += r.end - out[n-1].end
				out[n-1].end = r.end
			}
			continue
		}
		need += r.end - r.off
		out = append(out, r)
	}
	// Merge the smallest gaps first within the budget.
	gaps := make([]int, 0, len(out))
	for i := 1; i < len(out); i++ {
		if out[i].off-out[i-1].end <= maxMergeGap {
			gaps = append(gaps, i)
		}
	}
	slices.SortStableFunc(gaps, func(a, b int) int {
		return cmp.Compare(out[a].off-out[a-1].end, out[b].off-out[b-1].end)
	})
	budget := max(int64(float64(need)*maxGapWaste), minGapBudget)
	join := make([]bool, len(out)) // join[i]: out[i] joins the range before it
	for _, i := range gaps {
		g := out[i].off - out[i-1].end
		if g > budget {
			break
		}
		budget -= g
		join[i] = true
	}
	merged := out[:0:0]
	for i, r := range out {
		if join[i] {
			merged[len(merged)-1].end = r.end
			continue
		}
		merged = append(merged, r)
	}
	var parts []byteRange
	for _, r := range merged {
		for r.end-r.off > maxRangePart {
			parts = append(parts, byteRange{r.off, r.off + maxRangePart})
			r.off += maxRangePart
		}
		parts = append(parts, r)
	}
	return parts
}

// chunkRanges are the byte ranges of the column chunks row group i needs,
// as the decoder reads them (clamped to the file like guardPages).
func (p *ParquetFile) chunkRanges(i int) []byteRange {
	cols := p.pf.Metadata().RowGroups[i].Columns
	rs := make([]byteRange, 0, len(p.plan.cols))
	for _, c := range p.plan.cols {
		m := &cols[c.leaf].MetaData
		start := chunkStart(m)
		if start < 0 || start > p.size || m.TotalCompressedSize < 0 {
			continue
		}
		if m.NumValues > 0 && m.TotalUncompressedSize/m.NumValues > maxStatBytes {
			// Values this long on average are rare in an export, and the
			// chunk may hold one longer than can ever be sent: it is read
			// through the page guard, which cuts such a value without
			// reading it, not fetched whole (huge-value pages).
			continue
		}
		rs = append(rs, byteRange{start, start + min(m.TotalCompressedSize, p.size-start)})
	}
	return rs
}

// fetch is the bytes of one row group's ranges, being read or read, or the
// windows through which a row group too large for its share is streamed.
type fetch struct {
	ranges []byteRange
	bufs   [][]byte
	done   chan struct{}
	err    error // the first failed read; set before done closes
	// held is what the fetch counts in budget: in its decoding part when
	// taken by a decoder, else (ahead) in reading ahead's.
	held   int64
	budget *MemoryBudget
	ahead  bool
	users  atomic.Int32 // row groups not yet decoded from it
	once   sync.Once
	// stream, when not nil, holds a window per column chunk of a
	// streamed row group.
	stream *windows
	// own is how many of bufs, from the first, the fetch read into
	// buffers of its budget's (the rest is a kept footer's).
	own int
}

// ioFile is what a File opened by a Source offers the Parquet reader
// beyond reads: the slots bounding its reads in flight, a check that the
// object is still the version opened, the footer kept from an earlier
// open of that version, and the memory budget of its reads.
type ioFile interface {
	readSlots() chan struct{}
	verify() error
	cachedFooter() []byte
	keepFooter([]byte)
	dropFooter()
	tails() *tailSizer
	memory() *MemoryBudget
}

// io is the File's slots and budget, or the defaults of a File not opened
// by a Source.
func (p *ParquetFile) io() (chan struct{}, *MemoryBudget) {
	if f, ok := p.f.(ioFile); ok {
		return f.readSlots(), f.memory()
	}
	return defaultSlots, defaultBudget
}

// planFetch is the fetch of row groups gs, not started: the ranges to read
// and, in held, their bytes. What the footer kept from planning holds (the
// tail of the object, or all of a small one) is not read again.
func (p *ParquetFile) planFetch(gs ...int) *fetch {
	var rs []byteRange
	for _, i := range gs {
		rs = append(rs, p.chunkRanges(i)...)
	}
	var kept []byte
	if f, ok := p.f.(ioFile); ok {
		kept = f.cachedFooter()
	}
	keptOff := p.size - int64(len(kept))
	inKept := false
	for k := range rs {
		if rs[k].end > keptOff {
			inKept = true
			rs[k].end = max(keptOff, rs[k].off)
		}
	}
	ft := &fetch{ranges: coalesce(rs), done: make(chan struct{})}
	for _, r := range ft.ranges {
		ft.held += r.end - r.off
	}
	ft.own = len(ft.ranges)
	ft.bufs = make([][]byte, len(ft.ranges))
	if inKept {
		ft.ranges = append(ft.ranges, byteRange{keptOff, p.size})
		ft.bufs = append(ft.bufs, kept)
	}
	return ft
}

// start reads the fetch's ranges concurrently, each read taking one of
// the File's slots.
func (p *ParquetFile) start(ft *fetch) {
	slots, _ := p.io()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k, r := range ft.ranges {
		if ft.bufs[k] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			b := ft.budget.bufs.get(int(r.end - r.off))
			n, err := p.f.ReadAt(b, r.off)
			if err == io.EOF && n == len(b) {
				err = nil
			}
			if err == nil && n < len(b) {
				err = io.ErrUnexpectedEOF
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ft.err == nil {
					ft.err = err
				}
				return
			}
			ft.bufs[k] = b
		}()
	}
	go func() {
		wg.Wait()
		close(ft.done)
	}()
}

// Prefetch starts reading the column chunks of row groups gs, those not
// read or being read already, in one set of ranges (neighbouring row
// groups' chunks merge), when the memory budget's part for reading ahead
// has room for them, so that later ReadRowGroup calls find them in
// memory. A row group larger than a decoder's share of the budget is not
// prefetched: it will be streamed. Bytes prefetched and never decoded are
// dropped by Release.
//
// When the budget has no room for them all, Prefetch reads the first ones
// that fit, and returns how many of gs, from the first, are now read or
// being read (or will be streamed): the caller may ask for the rest again
// once decoders have given bytes back; a row group never asked again is
// read when decoded.
func (p *ParquetFile) Prefetch(gs ...int) int {
	_, b := p.io()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fetches == nil {
		p.fetches = map[int]*fetch{}
	}
	var todo []int
	for _, i := range gs {
		if _, ok := p.fetches[i]; ok || i < 0 || i >= len(p.groups) || slices.Contains(todo, i) ||
			p.planWhole(i, b) == nil {
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return len(gs)
	}
	// The most of them, from the first, that the room free now holds;
	// another reader taking it meanwhile halves them.
	n := len(todo)
	ft := p.planFetch(todo...)
	if ft.held > b.aheadFree() {
		lo, hi := 0, n-1
		for lo < hi {
			if mid := (lo + hi + 1) / 2; p.planFetch(todo[:mid]...).held <= b.aheadFree() {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		n, ft = lo, nil
	}
	for ; n > 0; n, ft = n/2, nil {
		if ft == nil {
			ft = p.planFetch(todo[:n]...)
		}
		if !b.tryAhead(ft.held) {
			continue
		}
		b.noteRead(ft.held, n)
		ft.budget, ft.ahead = b, true
		p.start(ft)
		ft.users.Store(int32(n))
		for _, i := range todo[:n] {
			p.fetches[i] = ft
		}
		if n < len(todo) {
			return slices.Index(gs, todo[n]) // its first place: a repeat is skipped
		}
		return len(gs)
	}
	return slices.Index(gs, todo[0])
}

// planWhole is the fetch reading row group i whole, or nil when it would
// hold more than a decoder's share of b (or maxFetchBytes): the row group
// is then streamed.
func (p *ParquetFile) planWhole(i int, b *MemoryBudget) *fetch {
	if p.groups[i].CompressedBytes > maxFetchBytes {
		return nil
	}
	ft := p.planFetch(i)
	if ft.held > b.share || ft.held > maxFetchBytes {
		return nil
	}
	return ft
}

// takeFetch returns row group i's fetch, prefetched or started now, and
// forgets it, marking i taken: a row group is decoded once, and a prefetch
// asked after its decoding started would only read it again. A fetch
// started now first takes its bytes from the budget, waiting for them
// while other decoders hold them.
func (p *ParquetFile) takeFetch(ctx context.Context, i int) (*fetch, error) {
	_, b := p.io()
	p.mu.Lock()
	ft := p.fetches[i]
	if p.fetches == nil {
		p.fetches = map[int]*fetch{}
	}
	p.fetches[i] = nil // taken: a later Prefetch(i) is not made
	p.mu.Unlock()
	if ft != nil {
		b.readAhead.Add(1)
		return ft, nil
	}
	b.readOnDemand.Add(1)
	if ft = p.planWhole(i, b); ft == nil {
		// Too large to hold: streamed through windows within the share.
		ft = p.streamFetch(i, b)
	} else {
		b.noteRead(ft.held, 1)
	}
	if err := b.take(ctx, ft.held); err != nil {
		return nil, err
	}
	ft.budget = b
	ft.users.Store(1)
	if ft.stream != nil {
		close(ft.done)
	} else {
		p.start(ft)
	}
	return ft, nil
}

// free gives back the fetch's bytes to the budget, once.
func (ft *fetch) free() {
	ft.once.Do(func() {
		if ft.budget == nil {
			return
		}
		if ft.ahead {
			ft.budget.giveAhead(ft.held)
		} else {
			ft.budget.give(ft.held)
		}
	})
}

// release marks one of the fetch's row groups decoded; the last gives
// back its bytes, and its buffers to the budget's for the next fetches:
// the decoder copies what it reads out of them (fetchedReader), and no
// read is made once its row groups are decoded. Buffers that a read may
// still be filling (the decoder stopped before the fetch was done) are
// left to the collector.
func (ft *fetch) release() {
	if n := ft.users.Add(-1); n <= 0 {
		if ft.stream != nil {
			// No decoded value refers to a window's bytes once the
			// row group is decoded (values are copied or dictionary
			// references): the windows may go before the fetch does.
			ft.stream.drop()
		}
		ft.free()
		if n < 0 || ft.budget == nil {
			return
		}
		select {
		case <-ft.done:
		default:
			return
		}
		for k, b := range ft.bufs[:ft.own] {
			if b != nil {
				ft.bufs[k] = nil
				ft.budget.bufs.put(b)
			}
		}
	}
}

// Release drops the row groups prefetched and not decoded, and the footer
// kept for this version: the caller is done with the object. The file stays
// usable.
func (p *ParquetFile) Release() {
	p.mu.Lock()
	fs := p.fetches
	p.fetches = nil
	p.mu.Unlock()
	for _, ft := range fs {
		if ft != nil {
			ft.free()
		}
	}
	if f, ok := p.f.(ioFile); ok {
		f.dropFooter()
	}
}

// wait waits for the fetch's reads or ctx.
func (ft *fetch) wait(ctx context.Context) error {
	select {
	case <-ft.done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// windows stream a row group too large for a decoder's share: each column
// chunk is read a window at a time, as the decoder reaches it, the next
// window replacing the last. A window is the share divided among the
// chunks, so that the row group's memory stays within the share however
// large it is; a window smaller than the library's own read buffer would
// save no request, and the chunks are then read as the library asks.
//
// The decoder goes through the columns side by side, a batch of rows at a
// time, so their windows run out at about the same time: when one does,
// the windows of the others that are past their half are read again too,
// from where the decoder got to, all at once (and, the first time, the
// first window of every chunk): a round trip for the row group's columns
// rather than one after another, which a remote store answering after
// 30 ms would make the decoder wait for.
type windows struct {
	mu     sync.Mutex
	size   int64
	chunks []byteRange // sorted by offset
	bufs   [][]byte
	offs   []int64 // offset of bufs[k][0]
	next   []int64 // the offset after the last byte served of chunk k; 0: none yet
	slots  chan struct{}
	f      File
}

// streamFetch is the fetch that streams row group i within b's share.
func (p *ParquetFile) streamFetch(i int, b *MemoryBudget) *fetch {
	ft := &fetch{done: make(chan struct{})}
	chunks := p.chunkRanges(i)
	if len(chunks) == 0 {
		return ft
	}
	size := b.share / int64(len(chunks))
	if size < readBufferSize {
		return ft
	}
	slices.SortFunc(chunks, func(a, b byteRange) int { return cmp.Compare(a.off, b.off) })
	slots, _ := p.io()
	w := &windows{size: size, chunks: chunks, bufs: make([][]byte, len(chunks)), offs: make([]int64, len(chunks)),
		next: make([]int64, len(chunks)), slots: slots, f: p.f}
	for _, c := range chunks {
		ft.held += min(size, c.end-c.off)
	}
	ft.stream = w
	return ft
}

// read serves b at off from the window of its column chunk, reading the
// window that starts at off when b is not in it (with the others due, see
// windows). ok is false when b does not fit in one window of one chunk:
// the caller reads it from the File.
func (w *windows) read(b []byte, off int64) (ok bool, err error) {
	end := off + int64(len(b))
	k, found := slices.BinarySearchFunc(w.chunks, off, func(c byteRange, off int64) int {
		return cmp.Compare(c.off, off)
	})
	if !found {
		k--
	}
	if k < 0 || end > w.chunks[k].end || int64(len(b)) > w.size {
		return false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if buf := w.bufs[k]; buf == nil || off < w.offs[k] || end > w.offs[k]+int64(len(buf)) {
		if err := w.fill(k, off); err != nil {
			return true, err
		}
	}
	copy(b, w.bufs[k][off-w.offs[k]:])
	w.next[k] = end
	return true, nil
}

// fill reads chunk k's window at off, and at once the windows of the
// other chunks that are due: never read yet, or read past their half.
// A failed read of another chunk's window only drops it: that chunk's
// own read meets the error.
func (w *windows) fill(k int, off int64) error {
	at := map[int]int64{k: off}
	for j, c := range w.chunks {
		switch buf := w.bufs[j]; {
		case j == k:
		case w.next[j] == 0 && buf == nil:
			at[j] = c.off
		case buf != nil && w.next[j] < c.end && w.next[j]-w.offs[j] >= int64(len(buf))/2:
			at[j] = w.next[j]
		}
	}
	errs := make(map[int]error, len(at))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for j, off := range at {
		c := w.chunks[j]
		n := min(w.size, c.end-off)
		buf := w.bufs[j]
		if int64(cap(buf)) < n {
			buf = make([]byte, n, min(w.size, c.end-c.off))
		}
		buf = buf[:n]
		w.bufs[j] = nil
		wg.Go(func() {
			w.slots <- struct{}{}
			got, err := w.f.ReadAt(buf, off)
			<-w.slots
			if err == io.EOF && int64(got) == n {
				err = nil
			}
			if err == nil && int64(got) < n {
				err = io.ErrUnexpectedEOF
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[j] = err
				return
			}
			w.bufs[j], w.offs[j] = buf, off
		})
	}
	wg.Wait()
	return errs[k]
}

// drop lets the windows' memory go.
func (w *windows) drop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.bufs)
}

// fetchedReader serves reads from a fetch's buffers or windows and reads
// what they do not hold from the File. A read served from memory still
// checks that the object is the version opened (a local file rewritten in
// place is caught as before), and a failed fetch fails every read with
// its error.
type fetchedReader struct {
	ft *fetch
	f  File
	// checked is set once the object was found still the version opened
	// (verify).
	checked atomic.Bool
}

func (r *fetchedReader) ReadAt(b []byte, off int64) (int, error) {
	if r.ft.err != nil {
		return 0, r.ft.err
	}
	if w := r.ft.stream; w != nil {
		switch ok, err := w.read(b, off); {
		case err != nil:
			return 0, err
		case !ok:
			return r.f.ReadAt(b, off)
		}
		if err := r.verify(); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	end := off + int64(len(b))
	k, _ := slices.BinarySearchFunc(r.ft.ranges, off, func(x byteRange, off int64) int {
		return cmp.Compare(x.end, off+1)
	})
	n := 0
	for pos := off; pos < end; k++ {
		if k >= len(r.ft.ranges) || r.ft.ranges[k].off > pos || r.ft.ranges[k].end <= pos {
			return r.f.ReadAt(b, off) // not all in memory: read it all
		}
		x := r.ft.ranges[k]
		c := copy(b[n:], r.ft.bufs[k][pos-x.off:])
		n += c
		pos += int64(c)
	}
	if err := r.verify(); err != nil {
		return 0, err
	}
	return n, nil
}

// verify checks, for bytes served from memory, that the object is still
// the version opened: once a row group. The bytes in memory were read as
// that version (each read checks it), so a rewrite while the row group is
// decoded leaves them whole; the check stops the decoding of the row
// groups read before a rewrite and decoded after it. Once a read, it was
// an fstat for each page header of each column of a local file: 12% of
// the decoding's processor time in a dry run over 43,800 small objects.
func (r *fetchedReader) verify() error {
	f, ok := r.f.(ioFile)
	if !ok || r.checked.Load() {
		return nil
	}
	if err := f.verify(); err != nil {
		return err
	}
	r.checked.Store(true)
	return nil
}

// tailSizer sizes the first read of a footer. An export's writer makes
// its files' footers alike, so after the first footers of a source it reads
// a quarter more than the largest seen (within minTailGuess and
// maxTailGuess): most footers fit, and little more than the footer is
// read. Each Source has its own, so that another source's files do not
// size its reads.
type tailSizer struct {
	largest atomic.Int64 // the largest footer (with its 8 last bytes) read yet
}

// defaultTails sizes the footer reads of Files not opened by a Source.
var defaultTails tailSizer

const (
	firstTailGuess = 32 << 10
	minTailGuess   = 8 << 10
	maxTailGuess   = 4 << 20
	// keepTail is the most of a tail read kept beyond the footer.
	keepTail = 256 << 10
	// wholeObject is the size up to which an object is read whole with
	// its footer, which the decoders then find in memory: one request
	// for it all rather than three or more for a few KiB each.
	wholeObject = 128 << 10
)

func (t *tailSizer) size() int64 {
	n := t.largest.Load()
	if n == 0 {
		return firstTailGuess
	}
	return min(max(n*5/4, minTailGuess), maxTailGuess)
}

func (t *tailSizer) note(n int64) {
	for {
		cur := t.largest.Load()
		if n <= cur || t.largest.CompareAndSwap(cur, n) {
			return
		}
	}
}

// keptTail is what of a tail read to keep for the decoder: all of it (the
// footer and the ends of the last column chunks before it, or all of a
// small object), unless it is larger than keepTail, then the footer alone
// (its last n bytes).
func keptTail(tail []byte, n int64) []byte {
	if int64(len(tail)) <= max(n, keepTail) {
		return tail
	}
	return tail[int64(len(tail))-n:]
}

// readTail reads the file's last ts.size() bytes, or all of a file no
// larger or no larger than wholeObject, and checks the magic bytes at both ends; the 4 head bytes of a
// larger file are read at the same time as the tail.
func readTail(r *trackedReader, ts *tailSizer) ([]byte, error) {
	n := ts.size()
	if r.size <= wholeObject {
		n = r.size
	}
	tail := make([]byte, min(n, r.size))
	var head [4]byte
	var herr error
	var wg sync.WaitGroup
	if int64(len(tail)) < r.size {
		wg.Go(func() {
			if _, err := r.ReadAt(head[:], 0); err != nil {
				herr = fmt.Errorf("read header: %w", err)
			}
		})
	}
	_, err := r.ReadAt(tail, r.size-int64(len(tail)))
	wg.Wait()
	if herr != nil {
		return nil, herr
	}
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read footer: %w", err)
	}
	if int64(len(tail)) == r.size {
		copy(head[:], tail)
	}
	if string(head[:]) != "PAR1" || string(tail[len(tail)-4:]) != "PAR1" {
		return nil, errors.New("not a Parquet file (no PAR1 magic at both ends), or truncated, or encrypted")
	}
	return tail, nil
}

// footerCache keeps the footers read while planning for the decoders,
// which would otherwise read them again, by object version, until the
// decoders are done with the object, within the footers' part of the
// memory budget (an eighth): at a few KiB each, the footers of thousands
// of objects. Planning reads every footer before the first decode, so in
// a job of tens of thousands of objects only the first ones find theirs
// kept, whatever the bound. Peak RSS of a dry run over 43,800 objects:
// 454 MiB with 128 MiB of footers and 256 MiB of read-ahead, 226 MiB with
// 16 and 64, 205 MiB with no footers kept. When full it takes no more: the
// decoders go through the objects in the order they were planned, and
// dropping the oldest for the newest would have each of them miss.
//
// A local source keeps none (off): reading a footer again from local disk
// costs one pread, where keeping them held their part of the budget for
// nothing. A dry run over 43,800 local objects of 10 KB peaked at 169-171
// MiB with footers kept, 135-141 MiB without, in the same processor time.
type footerCache struct {
	mu     sync.Mutex
	budget *MemoryBudget
	off    bool
	m      map[footerKey][]byte
}

type footerKey struct {
	key, version string
	size         int64
}

func (c *footerCache) get(key string, size int64, version string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[footerKey{key, version, size}]
}

func (c *footerCache) put(key string, size int64, version string, b []byte) {
	if c.off || len(b) == 0 || int64(len(b)) > c.budget.footers/16 || version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := footerKey{key, version, size}
	if c.m == nil {
		c.m = map[footerKey][]byte{}
	}
	if _, ok := c.m[k]; ok || !c.budget.tryFooter(int64(len(b))) {
		return
	}
	c.m[k] = slices.Clone(b)
}

func (c *footerCache) drop(key string, size int64, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := footerKey{key, version, size}
	if b, ok := c.m[k]; ok {
		c.budget.giveFooter(int64(len(b)))
		delete(c.m, k)
	}
}
