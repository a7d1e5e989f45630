package readers

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// ErrUnsupported: a table format, or a feature of a table, that the readers
// cannot read correctly (a Delta table with deletion vectors or column
// mapping, an Iceberg table). Reading its Parquet files as a heap would
// send removed or deleted rows, so it is refused instead.
var ErrUnsupported = errors.New("unsupported table")

// SkipNotInTable is the reason a Parquet file in a Delta table's folder is
// not read: the table version read does not hold it (OPTIMIZE, DELETE,
// MERGE or an overwrite removed it, and VACUUM has not yet deleted it).
const SkipNotInTable = "not in the Delta table version read"

// TableVersion is a Delta table a listing read, and the version it read.
type TableVersion struct {
	URI     string // the table's folder
	Version int64
}

// deltaLogDir is the folder of a Delta table's transaction log.
const deltaLogDir = "_delta_log"

// commitReaders is how many commit files are read at once.
const commitReaders = 16

// deltaReaderFeatures are the reader features of protocol version 3 this
// reader handles: those that change nothing in how a data file is read,
// and the two it checks file by file or table by table (deletionVectors:
// refused where a live file has one; columnMapping: refused unless the
// mode is none). v2Checkpoint tables are read from classic checkpoints
// and commits; a checkpoint with sidecars is refused.
var deltaReaderFeatures = []string{
	"deletionVectors", "columnMapping", "timestampNtz", "v2Checkpoint",
	"vacuumProtocolCheck", "typeWidening", "typeWidening-preview",
}

// deltaAction is one line of a commit file, and one row of a checkpoint:
// the same fields under the same names in both.
type deltaAction struct {
	Add      *deltaAdd      `json:"add" parquet:"add,optional"`
	Remove   *deltaRemove   `json:"remove" parquet:"remove,optional"`
	MetaData *deltaMetaData `json:"metaData" parquet:"metaData,optional"`
	Protocol *deltaProtocol `json:"protocol" parquet:"protocol,optional"`
	Sidecar  *deltaSidecar  `json:"sidecar" parquet:"sidecar,optional"`
}

type deltaAdd struct {
	Path             string            `json:"path" parquet:"path"`
	PartitionValues  map[string]string `json:"partitionValues" parquet:"partitionValues"`
	Size             int64             `json:"size" parquet:"size"`
	ModificationTime int64             `json:"modificationTime" parquet:"modificationTime"`
	DataChange       bool              `json:"dataChange" parquet:"dataChange"`
	DeletionVector   *deltaDV          `json:"deletionVector" parquet:"deletionVector,optional"`
}

type deltaRemove struct {
	Path           string   `json:"path" parquet:"path"`
	DataChange     bool     `json:"dataChange" parquet:"dataChange"`
	DeletionVector *deltaDV `json:"deletionVector" parquet:"deletionVector,optional"`
}

type deltaDV struct {
	StorageType    string `json:"storageType" parquet:"storageType"`
	PathOrInlineDv string `json:"pathOrInlineDv" parquet:"pathOrInlineDv"`
	Offset         *int32 `json:"offset" parquet:"offset,optional"`
	SizeInBytes    int32  `json:"sizeInBytes" parquet:"sizeInBytes"`
	Cardinality    int64  `json:"cardinality" parquet:"cardinality"`
}

type deltaMetaData struct {
	ID               string            `json:"id" parquet:"id"`
	Format           deltaFormat       `json:"format" parquet:"format"`
	SchemaString     string            `json:"schemaString" parquet:"schemaString"`
	PartitionColumns []string          `json:"partitionColumns" parquet:"partitionColumns,list"`
	Configuration    map[string]string `json:"configuration" parquet:"configuration"`
}

type deltaFormat struct {
	Provider string `json:"provider" parquet:"provider"`
}

type deltaProtocol struct {
	MinReaderVersion int32    `json:"minReaderVersion" parquet:"minReaderVersion"`
	MinWriterVersion int32    `json:"minWriterVersion" parquet:"minWriterVersion"`
	ReaderFeatures   []string `json:"readerFeatures" parquet:"readerFeatures,list,optional"`
}

type deltaSidecar struct {
	Path string `json:"path" parquet:"path"`
}

// deltaLog is what a listing shows of one table's _delta_log/.
type deltaLog struct {
	commits map[int64]objstore.Attrs
	// checkpoints are the classic checkpoints, single- or multi-part, by
	// version: parts[i] is part i+1, nil while unlisted.
	checkpoints map[int64][]*objstore.Attrs
	// v2 marks versions with a UUID-named (v2) checkpoint, which this
	// reader does not read.
	v2 map[int64]bool
}

// deltaTable is one version of a Delta table: its live files by key
// (relative to the source), and what the log says about them.
type deltaTable struct {
	root    string // key prefix of the table's folder: "" or "a/b/"
	uri     string
	version int64
	files   map[string]*deltaAdd
	meta    *deltaMetaData
	types   map[string]string // partition column (lower case) -> Delta type
	// carried are the live files that only rearrange delivered rows, and
	// rewritten counts the delivered files rewritten with data changes,
	// since SourceOptions.Since.
	carried   map[string]bool
	rewritten int
}

// deltaRoots finds the tables in a listing: the folders holding a
// _delta_log/ folder (key prefixes, "" for the source itself). It refuses
// an Iceberg table (a metadata/ folder of *.metadata.json without a Delta
// log beside it; a table that has both, Delta UniForm, is read as Delta).
func (s *Source) deltaRoots(entries []objstore.Attrs) ([]string, error) {
	roots := map[string]bool{}
	iceberg := map[string]bool{}
	for _, e := range entries {
		parts := strings.Split(e.Key, "/")
		for i := range len(parts) - 1 {
			switch {
			case parts[i] == deltaLogDir:
				roots[prefixOf(parts[:i])] = true
			case parts[i] == "metadata" && i == len(parts)-2 && strings.HasSuffix(parts[i+1], ".metadata.json"):
				iceberg[prefixOf(parts[:i])] = true
			}
		}
	}
	for r := range iceberg {
		if !roots[r] {
			return nil, fmt.Errorf("list %s: %w: %s is an Iceberg table (metadata/*.metadata.json); "+
				"Iceberg tables are not read yet, and reading their Parquet files as a heap would send deleted and replaced rows. "+
				"Export the table as plain Parquet, or as a Delta table, and give that as the source",
				s.uri, ErrUnsupported, s.st.URI(r))
		}
	}
	out := make([]string, 0, len(roots))
	for r := range roots {
		out = append(out, r)
	}
	// Longest first: a file belongs to the innermost table holding it.
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), cmp.Compare(a, b)) })
	return out, nil
}

// tableURI names the table whose folder is the key prefix root.
func (s *Source) tableURI(root string) string { return strings.TrimSuffix(s.st.URI(root), "/") }

func prefixOf(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "/") + "/"
}

// tableOf returns the table whose folder holds key, or nil.
func tableOf(tables []*deltaTable, key string) *deltaTable {
	for _, t := range tables {
		if strings.HasPrefix(key, t.root) {
			return t
		}
	}
	return nil
}

// openDelta reads the table at root at version (or the latest when
// version < 0) from the log objects in entries: the last classic
// checkpoint at or before it, then the commits after that checkpoint.
// The listing, needed anyway for the commits, tells which checkpoints
// exist, so _last_checkpoint (a hint for stores where listing is slow) is
// not read.
func (s *Source) openDelta(ctx context.Context, root string, entries []objstore.Attrs, version int64) (*deltaTable, error) {
	t := &deltaTable{root: root, uri: s.tableURI(root), files: map[string]*deltaAdd{}, types: map[string]string{}}
	lg := parseDeltaLog(root, entries)
	latest := int64(-1)
	for v := range lg.commits {
		latest = max(latest, v)
	}
	for v := range lg.checkpoints {
		latest = max(latest, v)
	}
	for v := range lg.v2 {
		latest = max(latest, v)
	}
	if latest < 0 {
		return nil, fmt.Errorf("read Delta table %s: %w: %s/ holds no commit", t.uri, ErrNotFound, deltaLogDir)
	}
	if version < 0 {
		version = latest
	} else if version > latest {
		return nil, fmt.Errorf("read Delta table %s version %d: %w: the log ends at version %d", t.uri, version, ErrChanged, latest)
	}
	t.version = version

	cp := int64(-1)
	for v, parts := range lg.checkpoints {
		if v <= version && v > cp && !slices.Contains(parts, nil) {
			cp = v
		}
	}
	for v := cp + 1; v <= version; v++ {
		if _, ok := lg.commits[v]; ok {
			continue
		}
		for w := v; w <= version; w++ {
			if lg.v2[w] {
				return nil, fmt.Errorf("read Delta table %s version %d: %w: its state is in a v2 (UUID-named) checkpoint at version %d, "+
					"which this program does not read", t.uri, version, ErrUnsupported, w)
			}
		}
		return nil, fmt.Errorf("read Delta table %s version %d: %w: commit %d is missing from %s/ and no checkpoint covers it "+
			"(log files cleaned up?)", t.uri, version, ErrNotFound, v, deltaLogDir)
	}

	live := map[string]*deltaAdd{} // by file key: path and deletion vector
	apply := func(a *deltaAction) {
		switch {
		case a.Add != nil:
			live[fileKey(a.Add.Path, a.Add.DeletionVector)] = a.Add
		case a.Remove != nil:
			delete(live, fileKey(a.Remove.Path, a.Remove.DeletionVector))
		case a.MetaData != nil:
			t.meta = a.MetaData
		}
	}
	var proto *deltaProtocol
	if cp >= 0 {
		for _, part := range lg.checkpoints[cp] {
			err := s.readCheckpoint(ctx, *part, func(a *deltaAction) error {
				if a.Sidecar != nil {
					return fmt.Errorf("read Delta table %s version %d: %w: checkpoint %d keeps its files in sidecars (a v2 checkpoint), "+
						"which this program does not read", t.uri, version, ErrUnsupported, cp)
				}
				if a.Protocol != nil {
					proto = a.Protocol
				}
				apply(a)
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	// The commits after the checkpoint build the state; those after the
	// version a recurring job last read (when all are still in the log)
	// tell what it has delivered already.
	first := cp + 1
	since, carry := s.since[t.uri]
	if carry && since < version {
		for v := since + 1; v <= cp; v++ {
			if _, ok := lg.commits[v]; !ok {
				carry = false
				if s.log != nil {
					s.log.Warn("the Delta log no longer holds the commits since the version the job last read: "+
						"files OPTIMIZE rewrote since are read again", "table", t.uri, "since", since, "missing", v)
				}
				break
			}
		}
		if carry {
			first = min(first, since+1)
		}
	} else {
		carry = false
	}
	commits := make([][]deltaAction, version-first+1)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(commitReaders)
	for v := first; v <= version; v++ {
		g.Go(func() error {
			acts, err := s.readCommit(gctx, lg.commits[v].Key)
			commits[v-first] = acts
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, acts := range commits[cp+1-first:] {
		for i := range acts {
			if acts[i].Protocol != nil {
				proto = acts[i].Protocol
			}
			apply(&acts[i])
		}
	}
	if err := t.check(proto); err != nil {
		return nil, err
	}
	for _, a := range live {
		if a.DeletionVector != nil {
			return nil, fmt.Errorf("read Delta table %s version %d: %w: file %s has a deletion vector (rows deleted without rewriting the file); "+
				"reading it would send deleted rows. Rewrite the table without them first (REORG TABLE ... APPLY (PURGE)), "+
				"or disable them (delta.enableDeletionVectors = false) before the deletes", t.uri, version, ErrUnsupported, a.Path)
		}
		key, err := t.key(a.Path)
		if err != nil {
			return nil, err
		}
		t.files[key] = a
	}
	if carry {
		if err := t.carry(commits[since+1-first:], s.st, s.done); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// carry walks the commits made since the version a recurring job last
// read, in order, and marks the files whose rows it has delivered as
// others: a commit that changes no data (every add and remove with
// dataChange false: OPTIMIZE, ZORDER, a checkpoint-free compaction) and
// removes only delivered files adds files holding those same rows, which
// count as delivered in turn. A commit that changes data and removes
// delivered files (DELETE, UPDATE, MERGE) rewrites their surviving rows
// into files that are read: counted in rewritten, for the job to warn.
func (t *deltaTable) carry(commits [][]deltaAction, st *objstore.Store, done func(string) bool) error {
	t.carried = map[string]bool{}
	delivered := func(key string) bool { return t.carried[key] || (done != nil && done(st.URI(key))) }
	for _, acts := range commits {
		var adds, removes []string
		moved := true
		for _, a := range acts {
			switch {
			case a.Add != nil:
				k, err := t.key(a.Add.Path)
				if err != nil {
					return err
				}
				adds = append(adds, k)
				moved = moved && !a.Add.DataChange
			case a.Remove != nil:
				k, err := t.key(a.Remove.Path)
				if err != nil {
					return err
				}
				removes = append(removes, k)
				moved = moved && !a.Remove.DataChange
			}
		}
		if moved && len(adds) > 0 && len(removes) > 0 && !slices.ContainsFunc(removes, func(k string) bool { return !delivered(k) }) {
			for _, k := range adds {
				t.carried[k] = true
			}
			continue
		}
		if !moved && len(adds) > 0 {
			for _, k := range removes {
				if delivered(k) {
					t.rewritten++
				}
			}
		}
	}
	for k := range t.carried {
		if t.files[k] == nil {
			delete(t.carried, k) // removed again since
		}
	}
	return nil
}

// fileKey is how the log names a file: its path and deletion vector. The
// path is compared decoded, as writers may encode the same name
// differently.
func fileKey(p string, dv *deltaDV) string {
	if d, err := url.PathUnescape(p); err == nil {
		p = d
	}
	if dv == nil {
		return p
	}
	off := ""
	if dv.Offset != nil {
		off = strconv.Itoa(int(*dv.Offset))
	}
	return p + "\x00" + dv.StorageType + dv.PathOrInlineDv + "@" + off
}

// check refuses what this reader cannot read correctly: a protocol it does
// not know, column mapping, a format other than Parquet.
func (t *deltaTable) check(p *deltaProtocol) error {
	if p == nil || t.meta == nil {
		return fmt.Errorf("read Delta table %s version %d: %w: the log has no protocol or no metaData action", t.uri, t.version, ErrBadFile)
	}
	if p.MinReaderVersion > 3 {
		return fmt.Errorf("read Delta table %s version %d: %w: reader version %d (this program reads 1 to 3)",
			t.uri, t.version, ErrUnsupported, p.MinReaderVersion)
	}
	if p.MinReaderVersion == 3 {
		var unknown []string
		for _, f := range p.ReaderFeatures {
			if !slices.Contains(deltaReaderFeatures, f) {
				unknown = append(unknown, f)
			}
		}
		if len(unknown) > 0 {
			return fmt.Errorf("read Delta table %s version %d: %w: reader features %s are not supported",
				t.uri, t.version, ErrUnsupported, strings.Join(unknown, ", "))
		}
	}
	if m := t.meta.Configuration["delta.columnMapping.mode"]; m != "" && m != "none" {
		return fmt.Errorf("read Delta table %s version %d: %w: column mapping (delta.columnMapping.mode = %s) is not supported: "+
			"the data files name their columns by id or physical name, not as the table does", t.uri, t.version, ErrUnsupported, m)
	}
	if pr := t.meta.Format.Provider; pr != "" && !strings.EqualFold(pr, "parquet") {
		return fmt.Errorf("read Delta table %s version %d: %w: data files in format %q", t.uri, t.version, ErrUnsupported, pr)
	}
	var schema struct {
		Fields []struct {
			Name string `json:"name"`
			Type any    `json:"type"`
		} `json:"fields"`
	}
	if t.meta.SchemaString != "" {
		if err := json.Unmarshal([]byte(t.meta.SchemaString), &schema); err != nil {
			return fmt.Errorf("read Delta table %s version %d: %w: schemaString: %w", t.uri, t.version, ErrBadFile, err)
		}
	}
	for _, f := range schema.Fields {
		if typ, ok := f.Type.(string); ok {
			t.types[strings.ToLower(f.Name)] = typ
		}
	}
	for _, c := range t.meta.PartitionColumns {
		if mappedColumn(c) && !partitionRole(c) {
			return fmt.Errorf("read Delta table %s version %d: %w: partition column %q is one the mapping reads; "+
				"Delta keeps partition columns out of the data files, and this program reads only a day, an hour and a type from them",
				t.uri, t.version, ErrUnsupported, c)
		}
	}
	return nil
}

// key turns a path of the log into a key of the source: a relative path,
// URL-encoded, from the table's folder; or an absolute URI inside it.
func (t *deltaTable) key(p string) (string, error) {
	rel := ""
	if strings.Contains(p, "://") || strings.HasPrefix(p, "file:") {
		u, err := url.Parse(p)
		if err != nil {
			return "", fmt.Errorf("read Delta table %s version %d: %w: file path %q: %w", t.uri, t.version, ErrBadFile, p, err)
		}
		abs := u.Path
		if u.Scheme != "file" {
			abs = u.Scheme + "://" + u.Host + u.Path
		}
		base := strings.TrimSuffix(strings.TrimPrefix(t.uri, "file://"), "/") + "/"
		var ok bool
		if rel, ok = strings.CutPrefix(abs, base); !ok {
			return "", fmt.Errorf("read Delta table %s version %d: %w: file %s is outside the table's folder (a shallow clone?)",
				t.uri, t.version, ErrUnsupported, p)
		}
	} else {
		var err error
		if rel, err = url.PathUnescape(p); err != nil {
			return "", fmt.Errorf("read Delta table %s version %d: %w: file path %q: %w", t.uri, t.version, ErrBadFile, p, err)
		}
	}
	key := t.root + rel
	if err := objstore.CheckKey(key); err != nil {
		return "", fmt.Errorf("read Delta table %s version %d: %w: file path %q: %w", t.uri, t.version, ErrBadFile, p, err)
	}
	return key, nil
}

// partition is what the log says of a file's day, hour and message type,
// from its partition values; the table is the table's folder. A day comes
// from a day, dt or date column (YYYY-MM-DD or YYYYMMDD), from year, month
// and day columns, or else from the one partition column of type date; an
// hour from hr or hour; the message type from type or segment_type.
func (t *deltaTable) partition(st *objstore.Store, a *deltaAdd) Partition {
	p := Partition{Hour: -1, Table: ParsePartition(st.Name(t.root + "x")).Table}
	var y, m, d int
	var dateCols []string
	named := false
	for _, c := range t.meta.PartitionColumns {
		v, ok := a.PartitionValues[c]
		if !ok || v == "" {
			continue
		}
		lc := strings.ToLower(c)
		switch lc {
		case "day", "dt", "date":
			if day, ok := parseDate(v); ok {
				p.Day, p.HasDay, named = day, true, true
				continue
			}
			if lc == "day" {
				d, _ = smallInt(v, 1, 31)
			}
		case "year":
			y, _ = smallInt(v, firstYear, lastYear)
		case "month":
			m, _ = smallInt(v, 1, 12)
		case "hr", "hour":
			if h, ok := smallInt(v, 0, 23); ok {
				p.Hour = h
			}
		case "segment_type", "type":
			p.SegmentType = strings.ToLower(v)
		}
		if t.types[lc] == "date" {
			dateCols = append(dateCols, v)
		}
	}
	if !named && y > 0 && m > 0 && d > 0 {
		p.Day, p.HasDay = validDate(y, m, d)
		named = p.HasDay
	}
	if !named && len(dateCols) == 1 {
		p.Day, p.HasDay = parseDate(dateCols[0])
	}
	return p
}

// partitionRole reports a partition column the reader takes from the log.
func partitionRole(c string) bool {
	switch strings.ToLower(c) {
	case "day", "dt", "date", "year", "month", "hr", "hour", "segment_type", "type":
		return true
	}
	return false
}

// mappedColumn reports a column name the decoder would read a field from.
func mappedColumn(c string) bool {
	lc := strings.ToLower(c)
	for _, f := range fieldSpecs {
		for _, cand := range f.candidates {
			if strings.ToLower(cand) == lc {
				return true
			}
		}
	}
	return slices.Contains(usersUserID, lc)
}

// parseDeltaLog sorts the listed objects of root's _delta_log/ by kind.
func parseDeltaLog(root string, entries []objstore.Attrs) deltaLog {
	lg := deltaLog{commits: map[int64]objstore.Attrs{}, checkpoints: map[int64][]*objstore.Attrs{}, v2: map[int64]bool{}}
	dir := root + deltaLogDir + "/"
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Key, dir)
		if !ok || strings.Contains(name, "/") || e.Skip != "" {
			continue
		}
		if len(name) < 21 || name[20] != '.' {
			continue
		}
		v, err := strconv.ParseInt(name[:20], 10, 64)
		if err != nil {
			continue
		}
		rest := name[21:]
		switch {
		case rest == "json":
			lg.commits[v] = e
		case rest == "checkpoint.parquet":
			lg.checkpoints[v] = []*objstore.Attrs{&e}
		case strings.HasPrefix(rest, "checkpoint.") && (strings.HasSuffix(rest, ".parquet") || strings.HasSuffix(rest, ".json")):
			mid := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(rest, "checkpoint."), ".parquet"), ".json")
			i, n, multi := strings.Cut(mid, ".")
			pi, err1 := strconv.Atoi(i)
			pn, err2 := strconv.Atoi(n)
			if !multi || err1 != nil || err2 != nil || len(i) != 10 || len(n) != 10 || pi < 1 || pi > pn || !strings.HasSuffix(rest, ".parquet") {
				lg.v2[v] = true
				continue
			}
			parts := lg.checkpoints[v]
			if len(parts) != pn {
				parts = make([]*objstore.Attrs, pn)
			}
			parts[pi-1] = &e
			lg.checkpoints[v] = parts
		}
	}
	return lg
}

// readCommit reads one commit file: one JSON action a line.
func (s *Source) readCommit(ctx context.Context, key string) ([]deltaAction, error) {
	data, _, err := s.st.Read(ctx, key)
	if err != nil {
		return nil, err // the Store named the object
	}
	var acts []deltaAction
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var a deltaAction
		if err := json.Unmarshal(line, &a); err != nil {
			return nil, fmt.Errorf("read %s line %d: %w: %w", s.st.URI(key), n, ErrBadFile, err)
		}
		acts = append(acts, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", s.st.URI(key), ErrBadFile, err)
	}
	return acts, nil
}

// readCheckpoint reads the actions of one checkpoint part. The footer goes
// through the same checks as a data file's before the library decodes it.
func (s *Source) readCheckpoint(ctx context.Context, part objstore.Attrs, fn func(*deltaAction) error) (err error) {
	o := Object{URI: s.st.URI(part.Key), Key: part.Key, Size: part.Size, Version: part.Version}
	f, err := s.Open(ctx, o)
	if err != nil {
		return err
	}
	defer f.Close()
	r := &trackedReader{r: f, size: f.Size()}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("read %s: %w: checkpoint decoder failed: %v", o.URI, ErrBadFile, v)
		}
	}()
	pf, _, err := openFooter(r, nil)
	if err != nil {
		if ioErr := r.failure(); ioErr != nil {
			return fmt.Errorf("read %s: %w", o.URI, ioErr)
		}
		return fmt.Errorf("read %s: %w: %w", o.URI, ErrBadFile, err)
	}
	buf := make([]deltaAction, 256)
	for _, rg := range pf.RowGroups() {
		rd := parquet.NewGenericRowGroupReader[deltaAction](rg)
		for {
			clear(buf)
			n, rerr := rd.Read(buf)
			if ioErr := r.failure(); ioErr != nil {
				rd.Close()
				return fmt.Errorf("read %s: %w", o.URI, ioErr)
			}
			for i := range n {
				if err := fn(&buf[i]); err != nil {
					rd.Close()
					return err
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				rd.Close()
				return fmt.Errorf("read %s: %w: %w", o.URI, ErrBadFile, rerr)
			}
		}
		rd.Close()
	}
	return nil
}

// deltaTables reads every Delta table in the listing, each at the version
// SourceOptions.TableVersions names or at its latest.
func (s *Source) deltaTables(ctx context.Context, entries []objstore.Attrs) ([]*deltaTable, error) {
	roots, err := s.deltaRoots(entries)
	if err != nil {
		return nil, err
	}
	tables := make([]*deltaTable, 0, len(roots))
	for _, r := range roots {
		version := int64(-1)
		if v, ok := s.versions[s.tableURI(r)]; ok {
			version = v
		}
		t, err := s.openDelta(ctx, r, entries, version)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// missingFiles refuses a table whose log names a file the listing does
// not hold: VACUUM deleted it, or the folder is incomplete.
func missingFiles(tables []*deltaTable, listed map[string]bool) error {
	for _, t := range tables {
		var missing []string
		for k := range t.files {
			if !listed[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("read Delta table %s version %d: %w: %d files of this version are not in the folder, the first %s "+
				"(deleted by VACUUM, or the folder was copied in part)", t.uri, t.version, ErrNotFound, len(missing), missing[0])
		}
	}
	return nil
}
