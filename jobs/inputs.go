package jobs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
)

// SkipInEventTable is the skip reason of a `tracks` row whose event also has a
// table of its own in the same export: that table holds the same message with
// its properties, and is the one sent.
const SkipInEventTable = "in_event_table"

// inputs is what a job reads: the listed objects of every source with their
// row groups, and where each came from. It implements pipeline.Decoder.
type inputs struct {
	hint      readers.Hint
	batchSize int
	// skipBad sets aside an object found bad while its row groups are read
	// (--on-bad-file skip), as gather does for a bad footer.
	skipBad bool

	skipped []readers.Skipped // objects that are not data
	bad     []pipeline.SkippedObject
	// covered holds the normalised names of events that have a table of
	// their own, so that their copies in `tracks` are not sent twice.
	covered    map[string]bool
	outOfRange int
	undated    int
	// tables are the Delta tables listed, at the version read.
	tables []pipeline.TableVersion
	// listed counts the data objects of every shard in the listing;
	// otherShards those left to the other shards; footers the footers
	// this process read (objects the ledger pinned need none), carried the
	// objects planned as delivered by the files compacted into them.
	listed, otherShards int
	footers, carried    atomic.Int64
	// heldBack counts the objects without a day resumed with the time
	// filter of an interrupted run while this run's range asks for more
	// (undatedFilter).
	heldBack atomic.Int64

	// What planning an object needs (planObject): the listed objects in
	// plan order (sorted by URI, or in the kind's order), the ledger and
	// its objects by URI (pinned: those whose row groups it holds;
	// unfinished: by index, those with rows left), the listing window, and
	// the footers read at once.
	refs       []inputRef
	ledger     *pipeline.Manifest
	pinned     map[string]pipeline.PlannedObject
	held       map[string]int
	unfinished map[int]bool
	win        listing
	log        *slog.Logger
	onBadFile  string
	reads      int
	shard      pipeline.Shard
	start      time.Time
	// ready marks the objects planned: what planning tells of refs[i] (its
	// row groups, type, and aside or filters[i]) is written once, before
	// ready[i] is set, and read only after. left counts object i's row
	// groups not yet decoded by this process: once none is left, the
	// object is closed when its last user lets it go. later are the
	// objects planned while the run goes (plan), in plan order.
	ready []atomic.Bool
	left  []atomic.Int32
	later []int
	// stream is set when planning is streamed (gather).
	stream bool
	// badMu guards bad, aside, filters and multi: few objects are set
	// aside or read through a time filter, so they are kept by index, not
	// in every object's record; multi holds the rows of each row group of
	// the objects that have more than one (rowGroups).
	badMu   sync.Mutex
	aside   map[int]string
	filters map[int]*pipeline.TimeFilter
	multi   map[int][]int64
	// days names each partition day the listing has, for the plan
	// entries' Day: the objects of one day share its name.
	days map[time.Time]string

	// lookahead is how many units after the one a decoder starts have
	// their column chunks prefetched: the decoders take units in plan
	// order, so the next ones are read while these decode. asked is the
	// last unit in plan order whose prefetch was asked (those before it
	// were asked or passed), so that each is asked once without a set as
	// large as the plan; a prefetch the memory budget had no room for
	// moves it back (unask), so that the unit is asked again when a
	// decoder starts once bytes were given back.
	lookahead int
	// byURI is the objects' places in refs sorted by URI, or nil when
	// refs are in that order (no kind's order): find looks an object up
	// by binary search rather than in a map, which would hold some 40
	// bytes more an object.
	byURI   []int32
	askedMu sync.Mutex
	asked   unitKey
	closed  atomic.Bool // no prefetch opens a file after close
	// budget bounds the bytes of the objects held in memory, every
	// source's (--memory-budget).
	budget *readers.MemoryBudget
	// rows holds the row-group sizes read from footers (packed.go).
	rows rowSlab
	// openMu guards open: the objects in use now, by their place in
	// refs (hold, drop).
	openMu sync.Mutex
	open   map[int]*openObject
	// web bounds the rows of the footers read that have an anonymous_id
	// and no device id, for status; webMu guards it.
	webMu sync.Mutex
	web   webRows
}

// unitKey is a unit's place in plan order: its object's index in refs
// and its row group.
type unitKey struct {
	obj, rowGroup int
}

func (k unitKey) after(o unitKey) bool {
	return k.obj > o.obj || (k.obj == o.obj && k.rowGroup > o.rowGroup)
}

// inputRef is what the run keeps of each listed object for its whole
// length: where it is, what its path says, and what its footer told the
// plan. Plan entries (pipeline.Object) are made from it when the run asks
// for them (object), and the run lets them go once it is done with them:
// a plan of a million objects holds this record and its packed name, not
// an entry of 120 bytes and a whole URI for each. It holds no atomic or
// lock, so that the listing can be sorted in place.
type inputRef struct {
	from *origin
	// scope and hour are what the object's path says (partition): scope
	// all but the hour, shared by the objects of one table and day, as a
	// year of hourly partitions names each of its 8,760 hours once, and
	// each object would otherwise hold 72 bytes of it.
	scope *readers.Partition
	// name is the object's key, then its version (packed.go): its URI is
	// its origin's root and its key, made when asked for. Once the
	// listing is in plan order (frontCode), the key's first shared bytes
	// are those of the key before it, and name holds only the rest: the
	// keys of a sorted listing share most of their paths.
	name string
	size int64
	// nrows is the object's row groups, once planned; rows0 holds the
	// rows of the one row group of an object that has one (the small
	// hourly files of a Data Lakes export), inputs.multi those of one
	// that has more, so that most records hold no slice.
	rows0  int64
	nrows  uint32
	keyLen uint16 // the bytes of the key in name
	shared uint16 // the bytes of the key taken from the key before
	hour   int8
	typ    segment.Type
	empty  bool // a zero-byte object named as Parquet
	// carried is readers.Object.Carried.
	carried bool
	// numVersion is set when the version is a decimal number (a GCS
	// generation, a local file's modification time), held in name as
	// its 8 bytes rather than as up to 20 digits.
	numVersion bool
}

// origin is the source of listed objects and what their URIs have before
// their keys: one for a source's objects, shared, or one for an object
// whose URI does not end with its key (uri), which has its URI whole.
type origin struct {
	src       *readers.Source
	root, uri string
}

func (r *inputRef) version() string {
	v := r.name[r.keyLen:]
	if !r.numVersion {
		return v
	}
	var n uint64
	for i := range 8 {
		n = n<<8 | uint64(v[i])
	}
	return strconv.FormatUint(n, 10)
}

// nameOf is what a record's name holds of key and version (inputRef.name).
func nameOf(key, version string) (string, bool) {
	n, err := strconv.ParseUint(version, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != version {
		return key + version, false
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return key + string(b[:]), true
}

// wholeKey is the object's key as listed, before frontCode.
func (r *inputRef) wholeKey() string { return r.name[:r.keyLen] }

// wholeURIParts is the object's URI in two parts, before frontCode, for
// comparing URIs without making them.
func (r *inputRef) wholeURIParts() (string, string) {
	if r.from.uri != "" {
		return r.from.uri, ""
	}
	return r.from.root, r.wholeKey()
}

// compareURI orders two listed objects by URI, before frontCode.
func compareURI(a, b *inputRef) int {
	if a.from == b.from && a.from.uri == "" {
		return strings.Compare(a.wholeKey(), b.wholeKey())
	}
	a1, a2 := a.wholeURIParts()
	b1, b2 := b.wholeURIParts()
	return compareJoined(a1, a2, b1, b2)
}

// appendKey appends object i's key to dst: the first key of its block
// (codeBlock) is whole, and each after it takes its first bytes from the
// one before.
func (in *inputs) appendKey(dst []byte, i int) []byte {
	r := &in.refs[i]
	if r.shared == 0 {
		return append(dst, r.name[:r.keyLen]...)
	}
	start := len(dst)
	for j := i - i%codeBlock; j <= i; j++ {
		q := &in.refs[j]
		dst = append(dst[:start+int(q.shared)], q.name[:q.keyLen]...)
	}
	return dst
}

// key is object i's key.
func (in *inputs) key(i int) string {
	if r := &in.refs[i]; r.shared == 0 {
		return r.name[:r.keyLen]
	}
	return string(in.appendKey(nil, i))
}

// uri is object i's URI.
func (in *inputs) uri(i int) string {
	r := &in.refs[i]
	switch {
	case r.from.uri != "":
		return r.from.uri
	case r.shared == 0:
		return r.from.root + r.name[:r.keyLen]
	}
	b := make([]byte, 0, len(r.from.root)+int(r.shared)+int(r.keyLen))
	return string(in.appendKey(append(b, r.from.root...), i))
}

// compareJoined compares a1+a2 with b1+b2 without joining them.
func compareJoined(a1, a2, b1, b2 string) int {
	if len(a1) > len(b1) {
		return -compareJoined(b1, b2, a1, a2)
	}
	if c := strings.Compare(a1, b1[:len(a1)]); c != 0 {
		return c
	}
	rest := b1[len(a1):] // what b1 has beyond a1, compared with a2
	n := min(len(a2), len(rest))
	if c := strings.Compare(a2[:n], rest[:n]); c != 0 {
		return c
	}
	if n < len(rest) {
		return -1 // a ends inside b1
	}
	return strings.Compare(a2[n:], b2)
}

// openObject is an object being opened, decoded or prefetched. users
// counts the decoders and prefetches holding it, under inputs.openMu; mu
// is held while it is opened (which reads its footer) or its reads are
// started, so that one object is opened once.
type openObject struct {
	mu    sync.Mutex
	users int32
	pf    *readers.ParquetFile
	file  readers.File
}

// listing is the listing of the object r refers to, o its plan entry.
func (r *inputRef) listing(o *pipeline.Object) readers.Object {
	return readers.Object{URI: o.URI, Key: o.Key, Size: o.Size, Version: o.Version, Partition: r.partition(), Carried: r.carried}
}

// object is the plan entry of object i: made afresh, its key and version
// shared with the record, its URI made. Once the object is planned, it
// has its row groups, and what set it aside or filters its rows.
func (in *inputs) object(i int) pipeline.Object {
	return in.entry(i, in.uri(i), in.refs[i].version(), in.rowGroups(i))
}

// entry is the plan entry of object i with the URI, version and row
// groups given.
func (in *inputs) entry(i int, uri, version string, rows []int64) pipeline.Object {
	r := &in.refs[i]
	o := pipeline.Object{URI: uri, Key: uri[len(uri)-int(r.shared)-int(r.keyLen):], Size: r.size, Version: version}
	if r.from.uri != "" {
		o.Key = in.key(i)
	}
	if r.scope.HasDay {
		o.Day = in.days[r.scope.Day]
	}
	if in.ready[i].Load() {
		o.RowGroups = rows
		in.badMu.Lock()
		o.Skipped, o.Filter = in.aside[i], in.filters[i]
		in.badMu.Unlock()
	}
	return o
}

// entries is the plan entries of the objects at idx, planned, for the
// run: their URIs and the versions made from numbers share one block, and
// their single row groups another, rather than each made on its own.
func (in *inputs) entries(idx []int) []pipeline.Object {
	var buf []byte
	var singles []int64
	// ends holds where each object's URI and version end in buf, so that
	// neither is made twice.
	ends := make([][2]int, len(idx))
	for k, i := range idx {
		r := &in.refs[i]
		if r.from.uri != "" {
			buf = append(buf, r.from.uri...)
		} else {
			buf = in.appendKey(append(buf, r.from.root...), i)
		}
		ends[k][0] = len(buf)
		if r.numVersion {
			buf = append(buf, r.version()...)
		}
		ends[k][1] = len(buf)
		if r.nrows == 1 {
			singles = append(singles, r.rows0)
		}
	}
	block := string(buf)
	objs := make([]pipeline.Object, len(idx))
	off, single := 0, 0
	for k, i := range idx {
		r := &in.refs[i]
		uri, version := block[off:ends[k][0]], block[ends[k][0]:ends[k][1]]
		off = ends[k][1]
		if !r.numVersion {
			version = r.version()
		}
		var rows []int64
		if r.nrows == 1 {
			rows = singles[single : single+1 : single+1]
			single++
		} else {
			rows = in.rowGroups(i)
		}
		objs[k] = in.entry(i, uri, version, rows)
	}
	return objs
}

// rowGroups is the rows of each row group of object i, once planned.
func (in *inputs) rowGroups(i int) []int64 {
	switch r := &in.refs[i]; r.nrows {
	case 0:
		return nil
	case 1:
		return []int64{r.rows0}
	}
	in.badMu.Lock()
	defer in.badMu.Unlock()
	return in.multi[i]
}

// all is every object's plan entry, in plan order: for the commands that
// print the plan, not for a run, which takes them as it goes.
func (in *inputs) all() []pipeline.Object {
	out := make([]pipeline.Object, len(in.refs))
	for i := range out {
		out[i] = in.object(i)
	}
	return out
}

// partition is what the object's path says.
func (r *inputRef) partition() readers.Partition { return scopeAt(r.scope, r.hour) }

// scopeAt is the partition of a path that says scope and hour.
func scopeAt(scope *readers.Partition, hour int8) readers.Partition {
	p := *scope
	p.Hour = int(hour)
	return p
}

// gather lists every source and reads the footers of the objects that
// belong to shard, except those ledger (the shard's manifest, or nil)
// already planned at the version listed: their row groups are taken from
// it, so that a resume opens only what still has work. A bad file fails the
// job, or is set aside when onBadFile is "skip".
//
// With stream, only the objects the ledger holds are planned before gather
// returns; the others are left to plan (planner), which the run calls
// while it goes.
func gather(ctx context.Context, o Options, win listing, shard pipeline.Shard, ledger *pipeline.Manifest, log *slog.Logger, stream bool) (*inputs, error) {
	start := time.Now()
	in := &inputs{covered: map[string]bool{}, batchSize: readers.DefaultBatchSize,
		skipBad: o.OnBadFile == "skip", asked: unitKey{-1, -1}, open: map[int]*openObject{}}
	remote := false // any source on a bucket: see lookahead below
	in.budget = readers.NewMemoryBudget(memoryBudget(o), cmp.Or(o.Decoders, runtime.GOMAXPROCS(0)))
	if o.Type != "" {
		t := segment.ParseType(o.Type)
		if t == segment.TypeUnknown {
			return nil, fmt.Errorf("%w: --type %q: want identify, track, page, screen, group or alias", ErrConfig, o.Type)
		}
		in.hint.Type = t
	}
	// The listing goes straight into the records the run keeps, each
	// made slim as it is listed (its key and version packed, what its path
	// says shared), so that the listing of a million objects is not held
	// twice, once as listed and once as kept (packed.go).
	packed := 0
	// scopes holds what the paths of one table and day say but the hour:
	// a year of hourly partitions names 365 days, not one per object.
	scopes := map[readers.Partition]*readers.Partition{}
	in.days = map[time.Time]string{}
	var from *origin
	var tooLong string // a key no record can hold
	keep := func(obj readers.Object, src *readers.Source, empty bool) {
		scope := obj.Partition
		scope.Hour = 0
		p := scopes[scope]
		if p == nil {
			// Its strings are cut from one object's path: cloned, so
			// that the scope does not keep that path.
			scope.SegmentType, scope.Table = strings.Clone(scope.SegmentType), strings.Clone(scope.Table)
			p = &scope
			scopes[scope] = p
			if p.HasDay {
				in.days[p.Day] = day(p.Day)
			}
		}
		o := from
		if root, ok := strings.CutSuffix(obj.URI, obj.Key); !ok || empty {
			o = &origin{src: src, uri: strings.Clone(obj.URI)}
		} else if o == nil || o.src != src || o.root != root {
			o = &origin{src: src, root: strings.Clone(root)}
			from = o
		}
		if len(obj.Key) > math.MaxUint16 && tooLong == "" {
			tooLong = obj.URI
		}
		name, num := nameOf(obj.Key, obj.Version)
		in.refs = append(in.refs, inputRef{from: o, scope: p, name: name, keyLen: uint16(len(obj.Key)), numVersion: num,
			size: obj.Size, hour: int8(obj.Partition.Hour), empty: empty, carried: obj.Carried})
		if len(in.refs)-packed == packBlock {
			packNames(in.refs[packed:])
			packed = len(in.refs)
		}
	}
	// seen holds each URI once while listing: two sources overlapping
	// read each object once. One source lists each object once, and needs
	// none. It goes once the listing is in plan order: planned objects are
	// found by binary search (find), not in a map.
	var seen map[string]bool
	if len(o.Sources) > 1 {
		seen = map[string]bool{}
	}
	pins := tablePins(ledger)
	since, delivered := tableSince(ledger)
	seenTables := map[string]bool{}
	for _, uri := range o.Sources {
		src, err := readers.OpenSource(ctx, uri, readers.SourceOptions{From: win.from, To: win.to, Logger: log,
			TableVersions: pins, Since: since, Delivered: delivered, ReadConcurrency: o.ReadConcurrency,
			MemoryBudget: in.budget})
		if err != nil {
			return nil, err
		}
		remote = remote || !src.Local()
		// Each object is taken as it is listed: what belongs to other
		// shards is counted and dropped, never held beside this shard's.
		l, err := src.Visit(ctx, func(obj readers.Object) {
			if seen[obj.URI] {
				return
			}
			if win.keep != nil && !win.keep(partitionDay(obj), obj.URI) {
				in.outOfRange++
				return
			}
			in.listed++
			// Whether an event has a table of its own is known from the
			// listing, whichever shard reads that table.
			if t := eventTableOf(obj.Partition); t != "" {
				in.covered[convertro.NormalizeEventName(t)] = true
			}
			if !shard.Owns(obj.Key) {
				in.otherShards++
				return
			}
			if seen != nil {
				seen[obj.URI] = true
			}
			keep(obj, src, false)
		})
		if err != nil {
			return nil, err
		}
		for _, t := range l.Tables {
			if !seenTables[t.URI] {
				seenTables[t.URI] = true
				in.tables = append(in.tables, pipeline.TableVersion{URI: t.URI, Version: t.Version})
				log.Info("reading a Delta table", "table", t.URI, "version", t.Version, "pinned", hasPin(pins, t.URI))
			}
		}
		if l.Rewritten > 0 {
			log.Warn("Delta commits since the last run rewrote files already delivered (DELETE, UPDATE or MERGE): "+
				"the rows they kept are in the new files, which are read whole, so those rows are sent again",
				"source", uri, "files_rewritten", l.Rewritten)
		}
		for _, s := range l.Skipped {
			if !emptyParquet(s) {
				in.skipped = append(in.skipped, s)
				continue
			}
			// A zero-byte object named as Parquet is an interrupted write,
			// not a marker: a bad file, which a later run picks up once
			// fixed (plans match set-aside objects by URI: the listing
			// gives no key for it, so the URI stands in).
			if !seen[s.URI] {
				if seen != nil {
					seen[s.URI] = true
				}
				keep(readers.Object{URI: s.URI, Key: s.URI}, src, true)
			}
		}
		in.outOfRange += l.OutOfRange
		in.undated += l.Undated
	}
	// From a bucket, enough units ahead to keep the reads in flight that
	// hide the store's latency at the decoders' pace; the memory budget
	// bounds their bytes. Local disk has no latency to hide: only the unit
	// a decoder starts is read, as reading ahead held up to the budget's
	// part for it and saved no time (a dry run of the 2M-row warehouse
	// export, 1 MB row groups, peaked at 180-189 MiB reading 65 units
	// ahead, 106-112 MiB without, in 1-15% less processor time).
	in.lookahead = 1
	if remote {
		in.lookahead = max(readConcurrency(o), o.Decoders, runtime.GOMAXPROCS(0)) + 1
	}
	if tooLong != "" {
		return nil, fmt.Errorf("list %s: %w: a key longer than %d bytes", tooLong, readers.ErrBadFile, math.MaxUint16)
	}
	packNames(in.refs[packed:])
	in.refs = slices.Clip(in.refs)
	slices.SortFunc(in.refs, func(a, b inputRef) int { return compareURI(&a, &b) })
	sorted := true
	if k := kindNamed(o.Kind); k != nil && k.Order != nil {
		// The kind's order is the plan's, known from the listing: the
		// footers are read, and the plan streamed, in it.
		in.sortBy(k.Order)
		sorted = false
	}
	in.start = start

	in.ledger, in.win, in.log, in.onBadFile, in.reads, in.shard = ledger, win, log, o.OnBadFile, readConcurrency(o), shard
	in.pinned, in.held, in.unfinished = map[string]pipeline.PlannedObject{}, map[string]int{}, map[int]bool{}
	if ledger != nil {
		for i, po := range ledger.Objects {
			in.held[po.URI] = i
			if po.Skipped == "" && len(po.RowGroups) > 0 {
				in.pinned[po.URI] = po
			}
		}
		for _, u := range ledger.Units {
			if !u.Done && !u.Retired && u.Watermark < u.Rows {
				in.unfinished[u.Object] = true
			}
		}
	}
	seen = nil
	in.ready = make([]atomic.Bool, len(in.refs))
	in.left = make([]atomic.Int32, len(in.refs))
	in.aside, in.filters, in.multi = map[int]string{}, map[int]*pipeline.TimeFilter{}, map[int][]int64{}
	if !sorted {
		in.byURI = make([]int32, len(in.refs))
		for i := range in.byURI {
			in.byURI[i] = int32(i)
		}
		slices.SortFunc(in.byURI, func(a, b int32) int { return compareURI(&in.refs[a], &in.refs[b]) })
	}
	frontCode(in.refs)
	// What the run needs before it starts: every object when planning is
	// not streamed, else those the ledger holds (the run merges the
	// listing into the ledger, which must see them whole). The rest,
	// objects new to the ledger, is planned while the run goes (plan).
	in.stream = stream
	var early []int
	for i := range in.refs {
		if _, ok := in.held[in.uri(i)]; ok || !stream {
			early = append(early, i)
		} else {
			in.later = append(in.later, i)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	// As many footers are read at once as ranged reads are allowed in
	// flight: each is one read (two requests at once, with the head bytes).
	g.SetLimit(in.reads)
	for _, i := range early {
		g.Go(func() error { return in.planObject(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(in.later) == 0 {
		in.logPlanned()
	}
	return in, nil
}

// planObject plans the listed object i: its row groups from the ledger
// when it pinned this version, else from its footer (which a bad file
// fails, or sets the object aside with --on-bad-file skip). The object is
// ready for the decoders once it returns.
func (in *inputs) planObject(ctx context.Context, i int) error {
	r := &in.refs[i]
	// What the listing gave was set before planning began (gather), and
	// is not written again: find reads it while objects are planned.
	po := in.object(i)
	defer func() {
		r.nrows = uint32(len(po.RowGroups))
		if len(po.RowGroups) == 1 {
			r.rows0 = po.RowGroups[0]
		}
		left := int32(len(po.RowGroups))
		if po.Filter != nil {
			left -= int32(len(po.Filter.Pruned))
		}
		in.left[i].Store(left)
		if po.Skipped != "" || po.Filter != nil || len(po.RowGroups) > 1 {
			in.badMu.Lock()
			if len(po.RowGroups) > 1 {
				in.multi[i] = po.RowGroups
			}
			if po.Skipped != "" {
				in.aside[i] = po.Skipped
				in.bad = append(in.bad, pipeline.SkippedObject{URI: po.URI, Reason: po.Skipped})
			}
			if po.Filter != nil {
				in.filters[i] = po.Filter
			}
			in.badMu.Unlock()
		}
		in.ready[i].Store(true)
	}()
	if r.carried {
		// Its rows went out as the files OPTIMIZE compacted into
		// it: planned with nothing to read, so that the ledger
		// holds it as delivered.
		in.carried.Add(1)
		return nil
	}
	reuse := true
	if in.win.rows != nil && po.Day == "" && !r.empty {
		var prev *pipeline.PlannedObject
		li, ok := in.held[po.URI]
		if ok {
			prev = &in.ledger.Objects[li]
		}
		same := ok && prev.Version == po.Version && prev.Size == po.Size
		var more bool
		po.Filter, reuse, more = undatedFilter(*in.win.rows, prev, same, ok && in.unfinished[li])
		if more {
			in.heldBack.Add(1)
		}
	}
	if p, ok := in.pinned[po.URI]; ok && reuse && p.Version == po.Version && p.Size == po.Size && !r.empty {
		// The manifest pinned this version with its row groups:
		// the footer is read when (if) a row group is decoded.
		po.RowGroups = p.RowGroups // never changed once planned: shared
		return nil
	}
	in.footers.Add(1)
	groups, typ, web, err := r.footer(ctx, r.listing(&po), in.hint, po.Filter, &in.rows)
	switch {
	case err == nil:
		r.typ = typ
		po.RowGroups = groups
		if r.scope.Table == "tracks" && len(in.covered) > 0 {
			web.lo = 0 // some of its rows are skipped as in_event_table first
		}
		in.webMu.Lock()
		in.web.add(web)
		in.webMu.Unlock()
	case errors.Is(err, readers.ErrBadFile) && in.onBadFile == "skip":
		in.log.Warn("skipping bad file", "object", po.URI, "err", err)
		po.Skipped = err.Error()
	default:
		return err
	}
	return nil
}

// known is the objects the run starts with, in plan order: when planning
// is streamed, those the ledger holds (the run merges the listing into the
// ledger, which must see them whole), and none otherwise, as the run's
// planner hands them out (handOut).
func (in *inputs) known() []pipeline.Object {
	if !in.stream {
		return nil
	}
	idx := make([]int, 0, len(in.refs)-len(in.later))
	for i := range in.refs {
		if in.ready[i].Load() {
			idx = append(idx, i)
		}
	}
	return in.entries(idx)
}

// Planning in segments: the first small, so that the first request leaves
// once a few footers are read, then doubling up to a cap, so that a plan
// of a million objects is some hundred parts, each written once.
const (
	firstSegment = 8
	maxSegment   = 8192
)

// planner is the pipeline.Planner of a run: handOut when everything was
// planned before it, plan when planning is streamed and some objects are
// new to the ledger, else nil.
func (in *inputs) planner() pipeline.Planner {
	switch {
	case !in.stream:
		return in.handOut
	case len(in.later) > 0:
		return in.plan
	}
	return nil
}

// plannedRows is the rows handOut will hand the run, 0 when planning is
// streamed.
func (in *inputs) plannedRows() int64 {
	if in.stream {
		return 0
	}
	var n int64
	for i := range in.refs {
		if in.aside[i] != "" {
			continue
		}
		f := in.filters[i]
		for g, rows := range in.rowGroups(i) {
			if f == nil || !slices.Contains(f.Pruned, g) {
				n += rows
			}
		}
	}
	return n
}

// handOutSegment is how many objects planned before the run handOut hands
// at a time: few, as a dry run holds the plan entries of a backlog of
// units (pipeline's dryBacklog) and of the segment it lets in after them.
const handOutSegment = 256

// handOut hands the run a plan read whole before it starts (a dry run's,
// which a bad footer fails before it writes a line) in segments, as plan
// does while it reads footers: the run then makes and holds plan entries
// only for the part it has not finished, not for every object at once.
func (in *inputs) handOut(ctx context.Context, add func([]pipeline.Object) error) error {
	for at := 0; at < len(in.refs); at += handOutSegment {
		idx := make([]int, min(handOutSegment, len(in.refs)-at))
		for k := range idx {
			idx[k] = at + k
		}
		if err := add(in.entries(idx)); err != nil {
			return err
		}
	}
	return nil
}

// plan reads the footers of the objects new to the ledger, in plan order
// and in parallel (--read-concurrency at once), and hands them to the run
// segment by segment, each once all its objects are read: the decoders
// start on the first segment while later footers are still read.
func (in *inputs) plan(ctx context.Context, add func([]pipeline.Object) error) error {
	type span struct{ from, to int }
	var spans []span
	for at, n := 0, firstSegment; at < len(in.later); at, n = at+n, min(2*n, maxSegment) {
		spans = append(spans, span{at, min(at+n, len(in.later))})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(in.reads)
	read := make([]sync.WaitGroup, len(spans))
	launched := make(chan struct{})
	for k, sp := range spans {
		read[k].Add(sp.to - sp.from)
	}
	go func() {
		defer close(launched)
		for k, sp := range spans {
			for _, i := range in.later[sp.from:sp.to] {
				g.Go(func() error {
					defer read[k].Done()
					if err := gctx.Err(); err != nil {
						return err
					}
					return in.planObject(gctx, i)
				})
			}
		}
	}()
	var addErr error
	for k, sp := range spans {
		read[k].Wait()
		if gctx.Err() != nil {
			break
		}
		objs := in.entries(in.later[sp.from:sp.to])
		if addErr = add(objs); addErr != nil {
			break
		}
	}
	cancel()
	<-launched
	err := g.Wait()
	if addErr != nil {
		return addErr
	}
	if err != nil {
		return err
	}
	in.logPlanned()
	return nil
}

// readConcurrency is --read-concurrency, or its default when unset.
func readConcurrency(o Options) int {
	if o.ReadConcurrency > 0 {
		return o.ReadConcurrency
	}
	return readers.DefaultReadConcurrency
}

// memoryBudget is --memory-budget in bytes, or the default when unset.
func memoryBudget(o Options) int64 {
	if o.MemoryBudget > 0 {
		return o.MemoryBudget << 20
	}
	return readers.DefaultMemoryBudget
}

// tablePins are the Delta table versions a resume reads: those the ledger
// planned, while it has work left. A ledger whose work is all done pins
// nothing, and the next run reads each table's latest version.
func tablePins(ledger *pipeline.Manifest) map[string]int64 {
	if ledger == nil || len(ledger.Tables) == 0 || ledger.AllDone() {
		return nil
	}
	pins := make(map[string]int64, len(ledger.Tables))
	for _, t := range ledger.Tables {
		pins[t.URI] = t.Version
	}
	return pins
}

// tableSince is what a finished ledger delivered, for the next run to
// recognise the files OPTIMIZE compacted delivered ones into: the table
// versions it read, and the objects all of whose units are done (one with
// no units, such a compacted file among them, has nothing left to send).
func tableSince(ledger *pipeline.Manifest) (map[string]int64, func(string) bool) {
	if ledger == nil || len(ledger.Tables) == 0 || !ledger.AllDone() {
		return nil, nil
	}
	since := make(map[string]int64, len(ledger.Tables))
	for _, t := range ledger.Tables {
		since[t.URI] = t.Version
	}
	open := make([]bool, len(ledger.Objects))
	for _, u := range ledger.Units {
		if !u.Done && !u.Retired && u.Watermark < u.Rows {
			open[u.Object] = true
		}
	}
	done := map[string]bool{}
	for i, po := range ledger.Objects {
		if po.Skipped == "" && !open[i] {
			done[po.URI] = true
		}
	}
	return since, func(uri string) bool { return done[uri] }
}

func hasPin(pins map[string]int64, uri string) bool {
	_, ok := pins[uri]
	return ok
}

// partitionDay is the object's partition day as the ledger keeps it.
func partitionDay(o readers.Object) string {
	if !o.Partition.HasDay {
		return ""
	}
	return day(o.Partition.Day)
}

// emptyParquet reports a zero-byte object whose name says Parquet. Other
// zero-byte objects (folder markers such as x_$folder$) stay "not data".
func emptyParquet(s readers.Skipped) bool {
	return s.Reason == readers.SkipEmpty && strings.HasSuffix(strings.ToLower(s.URI), ".parquet")
}

// eventTableOf returns the event an object's table is named after, or "".
// A segment_type= partition, where there is one, says first: Segment Data
// Lakes writes segment_type=order_completed/ and segment_type=identify/
// under the source id's folder, which names no table. Only
// segment_type=track leaves the table to the folder, as in
// track_order_completed/segment_type=track/.
func eventTableOf(p readers.Partition) string {
	switch typ := segment.ParseType(p.SegmentType); {
	case p.SegmentType == "" || typ == segment.TypeTrack:
		return readers.EventTable(p.Table)
	case typ == segment.TypeUnknown:
		return readers.EventTable(p.SegmentType)
	}
	return ""
}

// footer reads the object's footer: its row groups (their sizes taken
// from rows), message type and web rows, and which of the row groups the
// time filter tf (nil for none) prunes.
func (r *inputRef) footer(ctx context.Context, obj readers.Object, h readers.Hint, tf *pipeline.TimeFilter, rows *rowSlab) ([]int64, segment.Type, webRows, error) {
	if r.empty {
		return nil, 0, webRows{}, fmt.Errorf("open %s: %w: empty object (0 bytes) named as a Parquet file: an interrupted write?", obj.URI, readers.ErrBadFile)
	}
	f, err := r.from.src.OpenListed(ctx, obj)
	if err != nil {
		return nil, 0, webRows{}, err
	}
	defer f.Close()
	pf, err := readers.OpenParquet(ctx, f, obj, h)
	if err != nil {
		return nil, 0, webRows{}, err
	}
	web := footerWebRows(pf)
	pruneRowGroups(tf, pf)
	groups := pf.RowGroups()
	// One row group's size is held in the record itself (rows0): only
	// more come from the slab.
	var sizes []int64
	if len(groups) > 1 {
		sizes = rows.take(len(groups))
	} else {
		sizes = make([]int64, len(groups))
	}
	for i, g := range groups {
		sizes[i] = g.Rows
	}
	return sizes, pf.Type(), web, nil
}

// Decode implements pipeline.Decoder: it reads one row group, keeping the
// object open while other row groups of it are still to be read, and marks
// as skipped the rows outside the run's time range and the rows of `tracks`
// whose event has its own table.
func (in *inputs) Decode(ctx context.Context, obj pipeline.Object, rowGroup int, fn func(firstRow int64, batch []segment.Message, skip []string) error) error {
	i, ok := in.find(obj.URI)
	if !ok {
		return fmt.Errorf("decode %s: not in this run's listing: %w", obj.URI, readers.ErrChanged)
	}
	r := &in.refs[i]
	e := in.hold(i)
	pf, err := e.acquire(ctx, r.from.src, r.listing(&obj), in.hint)
	if err != nil {
		in.drop(i, e, false)
		return in.badFile(err)
	}
	defer in.drop(i, e, true)
	in.prefetch(ctx, pf, i, rowGroup)
	tracks := r.scope.Table == "tracks" && len(in.covered) > 0
	// A row group holds few distinct event names: normalise each once, not
	// once per row (the lookup by string(name) does not allocate).
	var seen map[string]bool
	if tracks {
		seen = map[string]bool{}
	}
	var skip []string // one per decode: reused for each batch
	return in.badFile(pf.ReadRowGroup(ctx, rowGroup, in.batchSize, func(first int64, batch []segment.Message) error {
		if obj.Filter == nil && !tracks {
			return fn(first, batch, nil)
		}
		skip = slices.Grow(skip[:0], len(batch))[:len(batch)]
		clear(skip)
		// A row outside the run's time range is not this run's, whatever
		// else would skip it.
		if obj.Filter != nil {
			filterRows(obj.Filter, batch, skip)
		}
		if tracks {
			var name []byte
			for i := range batch {
				m := &batch[i]
				if skip[i] != "" {
					continue
				}
				name = m.EventText
				if len(name) == 0 {
					name = m.Event
				}
				covered, ok := seen[string(name)]
				if !ok {
					covered = in.covered[convertro.NormalizeEventName(string(name))]
					seen[string(name)] = covered
				}
				if covered {
					skip[i] = SkipInEventTable
				}
			}
		}
		return fn(first, batch, skip)
	}))
}

// ref is the listed object named uri, nil if the listing has none.
func (in *inputs) ref(uri string) *inputRef {
	if i, ok := in.find(uri); ok {
		return &in.refs[i]
	}
	return nil
}

// find is the place in refs of the listed object named uri.
func (in *inputs) find(uri string) (int, bool) {
	n := len(in.refs)
	if in.byURI != nil {
		// In a kind's order: each key looked at is made whole.
		var buf []byte
		cmpAt := func(k int) int {
			r := &in.refs[in.byURI[k]]
			if r.from.uri != "" {
				return strings.Compare(r.from.uri, uri)
			}
			buf = in.appendKey(buf[:0], int(in.byURI[k]))
			return compareJoined(r.from.root, string(buf), uri, "")
		}
		k := sort.Search(n, func(k int) bool { return cmpAt(k) >= 0 })
		if k < n && cmpAt(k) == 0 {
			return int(in.byURI[k]), true
		}
		return 0, false
	}
	// In URI order: the block whose first key (whole) is the last at or
	// before uri, then along it.
	blocks := (n + codeBlock - 1) / codeBlock
	b := sort.Search(blocks, func(b int) bool {
		r := &in.refs[b*codeBlock]
		u1, u2 := r.wholeURIParts()
		return compareJoined(u1, u2, uri, "") > 0
	}) - 1
	if b < 0 {
		return 0, false
	}
	var key []byte
	for i := b * codeBlock; i < min(n, (b+1)*codeBlock); i++ {
		r := &in.refs[i]
		key = append(key[:r.shared], r.name[:r.keyLen]...)
		if r.from.uri != "" {
			if r.from.uri == uri {
				return i, true
			}
			continue
		}
		if root := r.from.root; len(uri) == len(root)+len(key) && uri[:len(root)] == root && uri[len(root):] == string(key) {
			return i, true
		}
	}
	return 0, false
}

// badFile marks a bad-file error for the pipeline to set the object aside
// rather than stop, when the job skips bad files.
func (in *inputs) badFile(err error) error {
	if err != nil && in.skipBad && errors.Is(err, readers.ErrBadFile) {
		return fmt.Errorf("%w (%w)", err, pipeline.ErrSkipObject)
	}
	return err
}

// hold is object i's entry among the open objects, made if it has none,
// with one more user: the caller gives it back with drop.
func (in *inputs) hold(i int) *openObject {
	in.openMu.Lock()
	defer in.openMu.Unlock()
	e := in.open[i]
	if e == nil {
		e = &openObject{}
		in.open[i] = e
	}
	e.users++
	return e
}

// drop gives back a user of object i's entry e, decoded when it read a
// row group. The last user closes the object and forgets it once its row
// groups are all read, or when it is not open (it failed to open, or a
// prefetch found nothing to do).
func (in *inputs) drop(i int, e *openObject, decoded bool) {
	in.openMu.Lock()
	defer in.openMu.Unlock()
	// Counted down under the lock: the last user must see every other
	// user's row group counted.
	left := in.left[i].Load()
	if decoded {
		left = in.left[i].Add(-1)
	}
	e.users--
	if e.users > 0 {
		return
	}
	// No user holds e.mu now; close may, for a moment, and never waits
	// for openMu while it does.
	e.mu.Lock()
	defer e.mu.Unlock()
	if left <= 0 || e.pf == nil {
		delete(in.open, i)
		e.closeLocked()
	}
}

// acquire opens the object obj of src unless it is open.
func (e *openObject) acquire(ctx context.Context, src *readers.Source, obj readers.Object, h readers.Hint) (*readers.ParquetFile, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.openLocked(ctx, src, obj, h); err != nil {
		return nil, err
	}
	return e.pf, nil
}

// openLocked opens the object unless it is open: with the version and size
// the listing gave, and the footer kept from planning, it makes no request.
func (e *openObject) openLocked(ctx context.Context, src *readers.Source, obj readers.Object, h readers.Hint) error {
	if e.pf != nil {
		return nil
	}
	f, err := src.OpenListed(ctx, obj)
	if err != nil {
		return err
	}
	pf, err := readers.OpenParquet(ctx, f, obj, h)
	if err != nil {
		f.Close()
		return err
	}
	e.pf, e.file = pf, f
	return nil
}

// closeLocked closes the object if it is open.
func (e *openObject) closeLocked() {
	if e.pf != nil {
		e.pf.Release()
		e.file.Close()
		e.pf, e.file = nil, nil
	}
}

// prefetch starts reading the column chunks of the unit (pf's row group)
// and of the lookahead units that follow it in plan order, each once: the
// row groups of one object together, so that their chunks merge into few
// reads. Other objects are opened and read in the background; a failure
// there is left for the decoder of that unit to meet.
//
// The lookahead is in units, the budget in bytes: it asks for no more
// units than the budget can hold at the size of those read lately
// (AheadGroups), and a prefetch refused for room is asked again later
// (unask). Before, it asked for up to --read-concurrency units ahead: the
// farthest took the room first, the nearer ones were refused and marked
// asked, and each was read only when its decoder came to it. Through a
// proxy adding 30 ms to every request, a dry run of a 2M-row, 240-object
// export (row groups of about 1.3 MB) from the GCS emulator took 3.7 s
// where it took 1.4-1.6 s without the delay; it now takes 1.8-1.9 s.
func (in *inputs) prefetch(ctx context.Context, pf *readers.ParquetFile, i, rowGroup int) {
	look := in.lookahead
	if fit := in.budget.AheadGroups(); fit >= 0 {
		look = min(look, max(fit, 1))
	}
	n := 0
	for oi := i; oi < len(in.refs) && n < look; oi++ {
		if !in.ready[oi].Load() {
			break // not planned yet: its units come later
		}
		r := &in.refs[oi]
		in.badMu.Lock()
		skipped, filter := in.aside[oi] != "", in.filters[oi]
		in.badMu.Unlock()
		if skipped {
			continue
		}
		start := 0
		if oi == i {
			start = rowGroup
		}
		var gs []int
		in.askedMu.Lock()
		for g := start; g < int(r.nrows) && n < look; g++ {
			if filter != nil && slices.Contains(filter.Pruned, g) {
				continue
			}
			n++
			if k := (unitKey{oi, g}); k.after(in.asked) {
				in.asked = k
				gs = append(gs, g)
			}
		}
		in.askedMu.Unlock()
		if len(gs) == 0 {
			continue
		}
		if oi == i {
			// Refused here, the farther units would find no room either;
			// those of other objects are asked in the background, and
			// their refusals known only there.
			if k := pf.Prefetch(gs...); k < len(gs) {
				in.unask(oi, gs[k])
				return
			}
			continue
		}
		po := in.object(oi)
		obj := r.listing(&po)
		e := in.hold(oi)
		go func() {
			defer in.drop(oi, e, false)
			e.mu.Lock()
			defer e.mu.Unlock()
			if in.closed.Load() || in.left[oi].Load() <= 0 || e.openLocked(ctx, r.from.src, obj, in.hint) != nil {
				return
			}
			if k := e.pf.Prefetch(gs...); k < len(gs) {
				in.unask(oi, gs[k])
			}
		}()
	}
}

// unask moves asked back to just before unit (oi, g), whose prefetch the
// budget had no room for, unless it is there already. The units after it
// that were prefetched are asked again too, and find their row groups
// read or being read.
func (in *inputs) unask(oi, g int) {
	in.askedMu.Lock()
	defer in.askedMu.Unlock()
	if k := (unitKey{oi, g - 1}); in.asked.after(k) {
		in.asked = k
	}
}

// close releases whatever a stopped run left open.
func (in *inputs) close() {
	in.closed.Store(true)
	in.openMu.Lock()
	open := slices.Collect(maps.Values(in.open))
	in.openMu.Unlock()
	for _, e := range open {
		e.mu.Lock()
		e.closeLocked()
		e.mu.Unlock()
	}
	closed := map[*readers.Source]bool{}
	for i := range in.refs {
		if r := &in.refs[i]; !closed[r.from.src] {
			closed[r.from.src] = true
			r.from.src.Close()
		}
	}
}

// logPlanned says what this shard planned, and from where: the footers it
// read and the objects whose row groups the ledger gave. With many shards
// it shows each reading its own share; on a resume, how little it read.
func (in *inputs) logPlanned() {
	footers, carried := in.footers.Load(), in.carried.Load()
	in.log.Info("planned", "shard", in.shard.String(), "listed", in.listed, "objects", len(in.refs),
		"footers_read", footers, "from_ledger", int64(len(in.refs))-footers-carried,
		"delivered_as_compacted", carried, "streamed", len(in.later),
		"seconds", fmt.Sprintf("%.3f", time.Since(in.start).Seconds()))
}

// sortBy puts the listing in a kind's order, stable among objects it
// ranks alike. The order reads listings, whose URIs are made once each
// for the sort, not once for each comparison.
func (in *inputs) sortBy(order func(a, b readers.Object) int) {
	type entry struct {
		o readers.Object
		r inputRef
	}
	es := make([]entry, len(in.refs))
	for i := range in.refs {
		r := &in.refs[i]
		u1, u2 := r.wholeURIParts()
		uri := u1 + u2
		key := r.wholeKey()
		if r.from.uri == "" {
			key = uri[len(uri)-len(key):]
		}
		es[i] = entry{readers.Object{URI: uri, Key: key, Size: r.size, Version: r.version(), Partition: r.partition(), Carried: r.carried}, *r}
	}
	slices.SortStableFunc(es, func(a, b entry) int { return order(a.o, b.o) })
	for i := range es {
		in.refs[i] = es[i].r
	}
}
