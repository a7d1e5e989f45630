package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers"
)

// audienceKind is the audience sync: its own engine (diff, then deliver the
// changes), no plan of row groups, no daily cap, and no replay (the next
// sync sends again what was dead-lettered).
var audienceKind = Kind{
	Name:    "audience",
	Summary: "Engage audiences and computed traits",
	Run:     runAudience,
	Check: func(o Options) error {
		if o.MaxRequestsPerDay > 0 {
			return fmt.Errorf("%w: --max-requests-per-day applies to backfill and migration jobs, not to an audience sync", ErrConfig)
		}
		return nil
	},
	NoPlan:   "plan lists the row groups of a backfill; for an audience job use run --dry-run --out FILE, which diffs and sends nothing",
	NoReplay: "audience sync: its next sync sends its dead letters again; not replayed",
}

// The audience job (kind "audience") keeps Convertro's view of Engage
// audiences in step with a source of memberships (rule 18), and of Engage
// computed traits with a source of their values (rule 20, traits.go). The
// state location holds, under audience/:
//
//   - current.json: names the snapshot of what Convertro was last told,
//     one row per (user, audience or trait): member true/false (for a
//     trait: set or removed), a trait's typed value, the device id and ts
//     of the request that told it;
//   - pending.json: a sync whose changes are being delivered. It names the
//     changes file (one row per request) and the snapshot that becomes
//     current once every change is handled. A rerun finds it and resumes
//     the delivery (same manifest: at most the in-flight window is sent
//     again) before diffing anew.
//
// Snapshot and changes files are written under audience/sync-<id>/ before
// pending.json names them, so a kill at any point leaves either the old
// snapshot current with nothing pending, or a pending sync whose files are
// complete.

// MembershipColumns renames the columns of a plain membership table (input
// kind c). Empty fields take the default names.
type MembershipColumns struct {
	UserID    string `yaml:"userId" json:"userId,omitempty"`       // default user_id
	Audience  string `yaml:"audience" json:"audience,omitempty"`   // default audience
	Member    string `yaml:"member" json:"member,omitempty"`       // default member
	DeviceID  string `yaml:"deviceId" json:"deviceId,omitempty"`   // default device_id
	Timestamp string `yaml:"timestamp" json:"timestamp,omitempty"` // default timestamp
}

func (c MembershipColumns) withDefaults() MembershipColumns {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&c.UserID, "user_id")
	def(&c.Audience, "audience")
	def(&c.Member, "member")
	def(&c.DeviceID, "device_id")
	def(&c.Timestamp, "timestamp")
	return c
}

const (
	audienceCurrent  = "audience/current.json"
	audiencePending  = "audience/pending.json"
	changesRowGroup  = 16 << 10
	snapshotRowGroup = writers.DefaultMembershipRowGroup
)

// Input kinds of an audience sync, detected per object from its columns.
const (
	inputIdentifies = "identifies" // (a) one boolean column per audience key
	inputEvents     = "events"     // (b) audience_entered / audience_exited rows
	inputMembership = "membership" // (c) user, audience, member rows
	inputTraits     = "traits"     // user, trait, value rows (traits.go)
)

type audienceCurrentFile struct {
	Snapshot string    `json:"snapshot"`
	Rows     int64     `json:"rows"`
	Members  int64     `json:"members"`
	Synced   time.Time `json:"synced"`
}

type audiencePendingFile struct {
	ID          string `json:"id"`
	Fingerprint string `json:"fingerprint"`
	Changes     string `json:"changes"`
	// ChangesVersion pins the changes file (objstore.Attrs.Version).
	ChangesVersion string `json:"changes_version"`
	// ChangesGen is the numeric version an earlier program wrote, read
	// only: readPending moves it to ChangesVersion.
	ChangesGen int64  `json:"changes_generation,omitempty"`
	Snapshot   string `json:"snapshot"`
	Previous   string `json:"previous,omitempty"`
	// Replaced is the pending snapshot that a revert of dead letters replaced.
	Replaced string     `json:"-"`
	Diff     diffResult `json:"diff"`
	Created  time.Time  `json:"created"`
}

type audienceJob struct {
	o      Options
	env    Env
	mapper *convertro.Mapper
	wire   *convertro.Wire
	st     pipeline.FileStateStore
	work   string
	scope  map[string]bool // keys of --audience and --trait; empty: all
	// partitions is how many partitions the last diff spilled into, and
	// spilled the bytes it wrote to them.
	partitions int
	spilled    int64
	// from and to (--from, --to) select the sources' day partitions; the
	// device lookup and the state are read whole.
	from, to time.Time
}

// runAudience runs one audience sync: it finishes a sync a previous run left
// pending, then diffs the source against the snapshot and delivers the
// changes. The report is the new sync's (or the resumed one's when the
// source shows nothing new).
func runAudience(ctx context.Context, o Options, env Env) (*pipeline.Report, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Shard != "" || o.Shards > 1 {
		return nil, fmt.Errorf("%w: an audience sync runs as one process: --shard/--shards do not apply", ErrConfig)
	}
	from, to, err := dateRange(o, env.Now())
	if err != nil {
		return nil, err
	}
	s := convertro.Settings{Account: o.Account, ClientName: o.ClientName, SiteID: o.SiteID, Domain: o.Domain, Endpoint: o.Endpoint}
	if err := s.Validate(!o.DryRun); err != nil {
		return nil, err
	}
	m, err := convertro.NewMapper(s)
	if err != nil {
		return nil, err
	}
	j := &audienceJob{o: o, env: env, mapper: m, wire: convertro.NewWire(s), scope: map[string]bool{}, from: from, to: to}
	for _, a := range o.Audiences {
		if err := convertro.ValidateAudience(a); err != nil {
			return nil, fmt.Errorf("%w: --audience: %w", ErrConfig, err)
		}
		j.scope[convertro.SnakeCase(a)] = true
	}
	for _, a := range o.Traits {
		if err := convertro.ValidateAudience(a); err != nil {
			return nil, fmt.Errorf("%w: --trait: %w", ErrConfig, err)
		}
		j.scope[convertro.SnakeCase(a)] = true
	}
	st, err := pipeline.OpenState(ctx, o.State)
	if err != nil {
		return nil, err
	}
	j.st = st
	scratch, err := newScratch(env, "audience")
	if err != nil {
		return nil, fmt.Errorf("audience sync: %w", err)
	}
	defer scratch.Release()
	j.work = scratch.Dir

	if o.DryRun {
		return j.dryRun(ctx)
	}
	var resumed *pipeline.Report
	if data, _, err := st.Read(ctx, audiencePending); err == nil {
		var p audiencePendingFile
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("read %s: %w", st.URI(audiencePending), err)
		}
		if p.ChangesVersion == "" && p.ChangesGen != 0 {
			p.ChangesVersion, p.ChangesGen = strconv.FormatInt(p.ChangesGen, 10), 0
		}
		env.Log.Info("resuming an unfinished audience sync", "sync", p.ID, "changes", p.Diff.Changes)
		if resumed, err = j.deliver(ctx, p); err != nil {
			return resumed, err
		}
	} else if !errors.Is(err, objstore.ErrNotFound) {
		return nil, err
	}
	p, res, err := j.diff(ctx)
	if err != nil {
		return nil, err
	}
	if p == nil {
		if resumed != nil && res.Changes == 0 {
			return resumed, nil
		}
		return j.nothingToSend(res), nil
	}
	return j.deliver(ctx, *p)
}

// nothingToSend reports a sync whose only changes (if any) lack a device id:
// they are counted as skipped, and the snapshot stays as it is.
func (j *audienceJob) nothingToSend(res diffResult) *pipeline.Report {
	rep := &pipeline.Report{
		Job: fmt.Sprintf("audience sync of %s: %d changes", strings.Join(j.o.Sources, ", "), res.Changes), Kind: "audience",
		Shard: "0/1", Status: pipeline.StatusFinished, RowsPlanned: res.Changes, RowsMarked: res.Changes,
		Counts: pipeline.Counts{RowsRead: res.Changes, RowsSkipped: map[string]int64{}},
	}
	if res.NoDevice > 0 {
		rep.Counts.RowsSkipped[convertro.SkipMissingDeviceID.String()] = res.NoDevice
	}
	if res.Changes == 0 {
		j.env.Log.Info("audience sync: no membership changed since the last sync")
	}
	rep.Summary(j.env.Stderr)
	return rep
}

// diff reads the current snapshot and the sources, and stores a pending
// sync; nil when no membership changed.
func (j *audienceJob) diff(ctx context.Context) (*audiencePendingFile, diffResult, error) {
	prev, gen, err := j.current(ctx)
	if err != nil {
		return nil, diffResult{}, err
	}
	res, changes, snapshot, err := j.diffFiles(ctx, prev)
	if err != nil {
		return nil, res, err
	}
	if res.Changes == res.NoDevice {
		// Nothing can be sent, and the new snapshot is the old one.
		return nil, res, nil
	}
	id := j.env.Now().UTC().Format("20060102T150405.000000000Z")
	p := audiencePendingFile{
		ID:          id,
		Fingerprint: j.o.identity(),
		Changes:     "audience/sync-" + id + "/changes.parquet",
		Snapshot:    "audience/sync-" + id + "/snapshot.parquet",
		Previous:    prev.Snapshot,
		Diff:        res,
		Created:     j.env.Now().UTC(),
	}
	if p.ChangesVersion, err = j.st.WriteFile(ctx, p.Changes, changes, objstore.IfAbsent); err != nil {
		return nil, res, err
	}
	if _, err := j.st.WriteFile(ctx, p.Snapshot, snapshot, objstore.IfAbsent); err != nil {
		return nil, res, err
	}
	data, _ := json.MarshalIndent(p, "", "  ")
	if _, err := j.st.Write(ctx, audiencePending, data, objstore.IfAbsent); err != nil {
		if errors.Is(err, objstore.ErrPrecondition) {
			return nil, res, fmt.Errorf("store %s: another audience sync started at the same time: %w", j.st.URI(audiencePending), pipeline.ErrLeaseHeld)
		}
		return nil, res, err
	}
	// The diff took no lease: a sync that committed while it ran has made
	// it stale. Pending is written first, so no commit can slip in after
	// this check (a sync that is pending stops a new one above).
	if _, now, err := j.current(ctx); err != nil || now != gen {
		if derr := j.st.Delete(ctx, audiencePending); derr != nil {
			err = errors.Join(err, derr)
		}
		if err != nil {
			return nil, res, err
		}
		return nil, res, fmt.Errorf("%s changed while this sync diffed: another sync committed; run again: %w", j.st.URI(audienceCurrent), pipeline.ErrLeaseHeld)
	}
	return &p, res, nil
}

// currentSnapshot returns the current.json record (zero if none yet) and
// its generation (0 if none).
func (j *audienceJob) currentSnapshot(ctx context.Context) (audienceCurrentFile, error) {
	cur, _, err := j.current(ctx)
	return cur, err
}

func (j *audienceJob) current(ctx context.Context) (audienceCurrentFile, string, error) {
	var cur audienceCurrentFile
	data, gen, err := j.st.Read(ctx, audienceCurrent)
	if errors.Is(err, objstore.ErrNotFound) {
		return cur, "", nil
	}
	if err != nil {
		return cur, "", err
	}
	if err := json.Unmarshal(data, &cur); err != nil {
		return cur, "", fmt.Errorf("read %s: %w", j.st.URI(audienceCurrent), err)
	}
	return cur, gen, nil
}

// diffFiles spills the previous snapshot, the sources and the devices, and
// writes the local changes and snapshot files.
func (j *audienceJob) diffFiles(ctx context.Context, prev audienceCurrentFile) (res diffResult, changes, snapshot string, err error) {
	in := &audienceInputs{}
	defer in.close()
	if prev.Snapshot != "" {
		local := filepath.Join(j.work, "previous.parquet")
		if _, err := j.st.ReadFile(ctx, prev.Snapshot, local); err != nil {
			return res, "", "", err
		}
		if err := in.add(ctx, local, readers.SourceOptions{}, func(t *audienceTable) error { t.kind = "snapshot"; return nil }); err != nil {
			return res, "", "", err
		}
	}
	for _, uri := range j.o.Sources {
		if err := in.add(ctx, uri, readers.SourceOptions{From: j.from, To: j.to, Logger: j.env.Log}, j.detect); err != nil {
			return res, "", "", err
		}
	}
	if j.o.Devices != "" {
		if err := in.add(ctx, j.o.Devices, readers.SourceOptions{}, func(t *audienceTable) error { t.kind = "devices"; return nil }); err != nil {
			return res, "", "", err
		}
	}
	var rows int64
	for _, t := range in.tables {
		rows += t.rows
	}
	j.partitions = partitionsFor(rows)
	sp, err := newSpill(j.work, j.partitions)
	if err != nil {
		return res, "", "", err
	}
	defer sp.close()
	for _, t := range in.tables {
		if err := t.open(ctx); err != nil {
			return res, "", "", err
		}
		err := j.spillTable(ctx, sp, t)
		t.closeFile()
		if err != nil {
			return res, "", "", err
		}
	}
	if err := sp.finish(); err != nil {
		return res, "", "", err
	}
	j.spilled = sp.bytes
	changes, snapshot = filepath.Join(j.work, "changes.parquet"), filepath.Join(j.work, "snapshot.parquet")
	cw, err := writers.CreateMemberships(changes, changesRowGroup)
	if err != nil {
		return res, "", "", err
	}
	sw, err := writers.CreateMemberships(snapshot, snapshotRowGroup)
	if err != nil {
		cw.Abort()
		return res, "", "", err
	}
	scope := func(a string) bool { return len(j.scope) == 0 || j.scope[a] }
	o := diffOptions{inScope: scope, now: j.env.Now().Unix()}
	o.absentLeaves, o.absentRemoves = in.wholeTables()
	res, err = sp.diff(o, cw, sw)
	if err != nil {
		cw.Abort()
		sw.Abort()
		return res, "", "", err
	}
	if err := cw.Close(); err != nil {
		sw.Abort()
		return res, "", "", err
	}
	if err := sw.Close(); err != nil {
		return res, "", "", err
	}
	return res, changes, snapshot, nil
}

// audienceInputs are the objects an audience sync reads. Only one object is
// open at a time: a source folder may hold thousands.
type audienceInputs struct {
	sources []*readers.Source
	tables  []*audienceTable
}

// audienceTable is one object of an audience sync's inputs.
type audienceTable struct {
	src  *readers.Source
	obj  readers.Object
	file readers.File
	tbl  *readers.Table
	rows int64
	kind string // snapshot, devices, or one of the input kinds
	// cols are the columns read, in the order spillTable expects.
	cols    []string
	entered int8 // events: 1 entered, -1 exited, 0 per row (event column)
	// valueKinds are the kinds of the trait value columns: the value
	// column of a traits table, or one per --trait of an identifies export.
	valueKinds []readers.ColumnKind
}

// add lists uri and reads the footer of each of its data objects, where
// kind sets what the object is (or refuses it).
func (in *audienceInputs) add(ctx context.Context, uri string, so readers.SourceOptions, kind func(*audienceTable) error) error {
	src, err := readers.OpenSource(ctx, uri, so)
	if err != nil {
		return err
	}
	in.sources = append(in.sources, src)
	l, err := src.Scan(ctx)
	if err != nil {
		return err
	}
	for _, obj := range l.Objects {
		t := &audienceTable{src: src, obj: obj}
		if err := t.open(ctx); err != nil {
			return err
		}
		t.rows = t.tbl.Rows()
		err := kind(t)
		t.closeFile()
		if err != nil {
			return err
		}
		in.tables = append(in.tables, t)
	}
	return nil
}

// wholeTables reports whether the sources are whole tables only: then a
// membership table lists every member (one it does not list has left), and
// a traits table every trait value (one it does not list is removed). Each
// speaks for its own kind of property alone, so that a traits table does
// not take members out of audiences synced from another source, nor a
// membership table remove traits. Events and identifies may be one day's
// worth, where silence is no news.
func (in *audienceInputs) wholeTables() (audiences, traits bool) {
	for _, t := range in.tables {
		switch t.kind {
		case inputMembership:
			audiences = true
		case inputTraits:
			traits = true
		case inputEvents, inputIdentifies:
			return false, false
		}
	}
	return audiences, traits
}

func (in *audienceInputs) close() {
	for _, t := range in.tables {
		t.closeFile()
	}
	for _, s := range in.sources {
		s.Close()
	}
}

// open opens the object and reads its footer.
func (t *audienceTable) open(ctx context.Context) error {
	f, err := t.src.Open(ctx, t.obj)
	if err != nil {
		return err
	}
	tbl, err := readers.OpenTable(ctx, f, t.obj)
	if err != nil {
		f.Close()
		return err
	}
	t.file, t.tbl = f, tbl
	return nil
}

func (t *audienceTable) closeFile() {
	if t.file != nil {
		t.file.Close()
		t.file, t.tbl = nil, nil
	}
}

// detect decides an input object's kind from its columns: an audience_key
// column makes Engage audience events (b); the membership columns a plain
// membership table (c); trait and value columns a computed traits table;
// otherwise the selected audience and trait columns of an identifies export
// (a).
func (j *audienceJob) detect(t *audienceTable) error {
	has := func(c string) bool { _, ok := t.tbl.Column(c); return ok }
	mc := j.o.Membership.withDefaults()
	switch {
	case has("audience_key"):
		t.kind = inputEvents
		t.cols = []string{"user_id", "audience_key", "event", "context_device_id", "timestamp"}
		table := t.obj.Partition.Table
		switch {
		case strings.Contains(table, "audience_entered"):
			t.entered = 1
		case strings.Contains(table, "audience_exited"):
			t.entered = -1
		case !has("event") && !has("event_text"):
			return fmt.Errorf("%w: %s: audience events without an event column or an audience_entered/audience_exited folder", ErrConfig, t.obj.URI)
		case !has("event"):
			t.cols[2] = "event_text"
		}
	case has(mc.Audience) && has(mc.Member):
		t.kind = inputMembership
		t.cols = []string{mc.UserID, mc.Audience, mc.Member, mc.DeviceID, mc.Timestamp}
	case has("trait") && slices.ContainsFunc(traitValueColumns, has):
		t.kind = inputTraits
		t.cols = []string{mc.UserID, "trait", mc.DeviceID, mc.Timestamp}
		for _, c := range traitValueColumns {
			if k, ok := t.tbl.Column(c); ok {
				t.cols = append(t.cols, c)
				t.valueKinds = append(t.valueKinds, k)
			}
		}
	default:
		if len(j.o.Audiences) == 0 && len(j.o.Traits) == 0 {
			return fmt.Errorf("%w: %s has neither audience_key, %s/%s nor trait/value columns; for an identifies export name the audience columns with --audience KEY and the computed trait columns with --trait NAME (or audiences:, traits: in the job file)",
				ErrConfig, t.obj.URI, mc.Audience, mc.Member)
		}
		t.kind = inputIdentifies
		t.cols = []string{"user_id", "context_device_id", "timestamp"}
		found := 0
		for _, a := range j.o.Audiences {
			if k, ok := t.tbl.Column(a); ok && (k == readers.ColumnBool || k == readers.ColumnText) {
				found++
			}
			t.cols = append(t.cols, a)
		}
		for _, a := range j.o.Traits {
			k, ok := t.tbl.Column(a)
			if ok {
				found++
			}
			t.cols = append(t.cols, a)
			t.valueKinds = append(t.valueKinds, k)
		}
		if found == 0 {
			return fmt.Errorf("%w: %s has none of the audience columns %s (as BOOLEAN or text) nor the trait columns %s", ErrConfig, t.obj.URI,
				strings.Join(j.o.Audiences, ", "), strings.Join(j.o.Traits, ", "))
		}
	}
	if !has(t.cols[0]) {
		return fmt.Errorf("%w: %s (%s input) has no %s column", ErrConfig, t.obj.URI, t.kind, t.cols[0])
	}
	return nil
}

// spillTable reads every row group of t into the spill.
func (j *audienceJob) spillTable(ctx context.Context, sp *spill, t *audienceTable) error {
	cols := t.cols
	switch t.kind {
	case "snapshot":
		cols = changesColumns
	case "devices":
		cols = []string{"user_id", "context_device_id", "timestamp"}
	}
	audKeys := map[string]string{} // source audience name -> key ("" when unusable)
	key := func(name []byte) string {
		k, ok := audKeys[string(name)]
		if !ok {
			k = convertro.SnakeCase(string(name))
			if err := convertro.ValidateAudience(string(name)); err != nil {
				j.env.Log.Warn("audience name unusable as a trait; its rows are left out", "object", t.obj.URI, "audience", string(name), "err", err)
				k = ""
			}
			audKeys[string(name)] = k
		}
		return k
	}
	in := func(a string) bool { return len(j.scope) == 0 || j.scope[a] }
	for g := range t.tbl.RowGroups() {
		err := t.tbl.ReadRowGroup(ctx, g, cols, func(_ int64, c []readers.Cell) error {
			user := string(c[0].Text)
			if c[0].Null || user == "" {
				return nil
			}
			micros := func(cell readers.Cell) int64 {
				if cell.Time.Valid {
					return cell.Time.Micros
				}
				return 0
			}
			switch t.kind {
			case "snapshot":
				ts, _ := readers.ParseNumber(c[4].Text)
				return sp.add(spillRec{Kind: recSnapshot, UserID: user, Audience: string(c[1].Text),
					Member: c[2].Bool == segment.True, DeviceID: string(c[3].Text), Micros: int64(ts) * 1e6, Value: string(c[5].Text)})
			case "devices":
				if c[1].Null || len(c[1].Text) == 0 {
					return nil
				}
				return sp.add(spillRec{Kind: recDevice, UserID: user, DeviceID: string(c[1].Text), Micros: micros(c[2])})
			case inputMembership:
				a := key(c[1].Text)
				if c[1].Null || a == "" || !in(a) || c[2].Bool == segment.Absent {
					return nil
				}
				return sp.add(spillRec{Kind: recSource, UserID: user, Audience: a, Member: c[2].Bool == segment.True,
					DeviceID: string(c[3].Text), Micros: micros(c[4])})
			case inputTraits:
				a := key(c[1].Text)
				if c[1].Null || a == "" || !in(a) {
					return nil
				}
				r := spillRec{Kind: recSource, UserID: user, Audience: a, Value: traitRemoved,
					DeviceID: string(c[2].Text), Micros: micros(c[3])}
				// The first value column that is not NULL holds the value;
				// all NULL is a removed trait.
				for i, k := range t.valueKinds {
					if cell := c[4+i]; !cell.Null {
						if r.Value = traitValue(k, cell); r.Value == "" {
							return nil
						}
						r.Member = true
						break
					}
				}
				return sp.add(r)
			case inputEvents:
				a := key(c[1].Text)
				if c[1].Null || a == "" || !in(a) {
					return nil
				}
				member := t.entered > 0
				if t.entered == 0 {
					switch convertro.NormalizeEventName(string(c[2].Text)) {
					case "audience entered":
						member = true
					case "audience exited":
						member = false
					default:
						return nil
					}
				}
				return sp.add(spillRec{Kind: recSource, UserID: user, Audience: a, Member: member,
					DeviceID: string(c[3].Text), Micros: micros(c[4])})
			default: // identifies: one record per audience or trait column present in the row
				for i, a := range j.o.Audiences {
					b := c[3+i].Bool
					if b == segment.Absent {
						continue
					}
					if err := sp.add(spillRec{Kind: recSource, UserID: user, Audience: key([]byte(a)), Member: b == segment.True,
						DeviceID: string(c[1].Text), Micros: micros(c[2])}); err != nil {
						return err
					}
				}
				for i, a := range j.o.Traits {
					cell := c[3+len(j.o.Audiences)+i]
					if cell.Null {
						continue // this identify did not carry the trait
					}
					v := traitValue(t.valueKinds[i], cell)
					if v == "" {
						continue
					}
					if err := sp.add(spillRec{Kind: recSource, UserID: user, Audience: key([]byte(a)), Member: true, Value: v,
						DeviceID: string(c[1].Text), Micros: micros(c[2])}); err != nil {
						return err
					}
				}
				return nil
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// deliver sends the changes of a pending sync on the pipeline (resuming its
// manifest), then makes its snapshot current.
func (j *audienceJob) deliver(ctx context.Context, p audiencePendingFile) (*pipeline.Report, error) {
	local := filepath.Join(j.work, "changes-"+p.ID+".parquet")
	if _, err := j.st.ReadFile(ctx, p.Changes, local); err != nil {
		return nil, err
	}
	dec, err := openChanges(ctx, local)
	if err != nil {
		return nil, err
	}
	defer dec.close()
	obj := pipeline.Object{URI: j.st.URI(p.Changes), Key: p.Changes, Size: dec.size, Version: p.ChangesVersion, RowGroups: dec.tbl.RowGroups()}
	sum := sha256.Sum256([]byte(p.Fingerprint + "\x00" + p.Changes + "\x00" + p.ChangesVersion))
	cfg := pipeline.Config{
		Job: pipeline.JobID{Kind: "audience", Fingerprint: hex.EncodeToString(sum[:12]),
			Description: fmt.Sprintf("audience sync %s of %s: %d changes", p.ID, strings.Join(j.o.Sources, ", "), p.Diff.Changes)},
		Shard:       pipeline.Shard{Index: 0, Count: 1},
		Objects:     []pipeline.Object{obj},
		Decoders:    j.o.Decoders,
		Concurrency: j.o.Concurrency,
		Fresh:       j.o.Fresh,
		LeaseTTL:    j.o.LeaseTTL,
		MaxURLBytes: MaxURLBytes,
	}
	cp, prevM, err := pipeline.OpenCheckpoint(ctx, j.st, cfg.Shard, pipeline.NewLease(), j.env.Now, j.o.LeaseTTL)
	if err != nil {
		return nil, err
	}
	client := convertro.NewClient(convertro.ClientOptions{
		Concurrency: j.o.Concurrency, Timeout: j.o.Timeout, MaxAttempts: j.o.MaxAttempts, Rate: j.o.Rate,
		Adaptive: !j.o.FixedRate, DownAfter: j.o.DownAfter, UserAgent: "convertro-etl/" + j.env.Version,
	})
	deps := pipeline.Deps{
		Decoder: dec, NewTransform: newAudienceTransform(j.mapper, j.wire),
		Sender: sender{client}, DeadLetters: newDeadLetters(j.st, cfg.Shard, j.env.Now),
		Checkpoint: cp, Previous: prevM, State: j.st,
		Logger: j.env.Log, Now: j.env.Now,
	}
	j.env.showProgress(&cfg, &deps)
	rep, err := pipeline.Run(ctx, cfg, deps)
	if rep != nil {
		rep.Summary(j.env.Stderr)
	}
	if err != nil && !errors.Is(err, pipeline.ErrIncomplete) {
		return rep, err
	}
	// Every change is handled: acknowledged, skipped for want of a device id
	// (which the snapshot does not record as told), or dead-lettered, which
	// the snapshot must not record as told either.
	m := cp.Manifest()
	if m == nil || len(m.DeadLetterFiles) == 0 {
		m = prevM
	}
	if m != nil && m.Counts.RowsDeadLettered > 0 {
		var rerr error
		if p, rerr = j.revertDeadLetters(ctx, p, m.DeadLetterFiles, dec); rerr != nil {
			return rep, errors.Join(err, rerr)
		}
	}
	if cerr := j.commit(ctx, p); cerr != nil {
		return rep, errors.Join(err, cerr)
	}
	return rep, err
}

// revertDeadLetters stores a copy of the pending snapshot in which the
// changes Convertro refused for good are undone: an entry refused is
// dropped (Convertro still takes the user for a non-member), an exit refused
// keeps the user a member. A computed trait's refused change leaves what
// Convertro holds unknown: the trait is kept as set to traitUnknown, which
// no value equals, so that the next sync sends its value, or its removal,
// again. The next sync then finds those changes again.
func (j *audienceJob) revertDeadLetters(ctx context.Context, p audiencePendingFile, files []string, changes *changesDecoder) (audiencePendingFile, error) {
	dead := map[int]map[int64]bool{} // row group -> rows of the changes file
	for _, name := range files {
		data, _, err := j.st.Read(ctx, name)
		if err != nil {
			return p, err
		}
		rows, err := writers.DecodeDeadLetters(j.st.URI(name), data)
		if err != nil {
			return p, err
		}
		for _, r := range rows {
			if dead[int(r.RowGroup)] == nil {
				dead[int(r.RowGroup)] = map[int64]bool{}
			}
			dead[int(r.RowGroup)][r.Row] = true
		}
	}
	refused := map[string]bool{} // user \x00 audience -> the membership that was refused
	for g, rows := range dead {
		err := changes.tbl.ReadRowGroup(ctx, g, changesColumns, func(row int64, c []readers.Cell) error {
			if rows[row] {
				refused[string(c[0].Text)+"\x00"+string(c[1].Text)] = c[2].Bool == segment.True
			}
			return nil
		})
		if err != nil {
			return p, err
		}
	}
	local := filepath.Join(j.work, "pending-snapshot.parquet")
	if _, err := j.st.ReadFile(ctx, p.Snapshot, local); err != nil {
		return p, err
	}
	in, err := openChanges(ctx, local)
	if err != nil {
		return p, err
	}
	defer in.close()
	out := filepath.Join(j.work, "committed-snapshot.parquet")
	w, err := writers.CreateMemberships(out, snapshotRowGroup)
	if err != nil {
		return p, err
	}
	p.Diff.Snapshot, p.Diff.Members = 0, 0
	for g := range in.tbl.RowGroups() {
		err := in.tbl.ReadRowGroup(ctx, g, changesColumns, func(_ int64, c []readers.Cell) error {
			r := writers.Membership{UserID: string(c[0].Text), Audience: string(c[1].Text), Member: c[2].Bool == segment.True,
				DeviceID: string(c[3].Text), Value: string(c[5].Text)}
			ts, _ := readers.ParseNumber(c[4].Text)
			r.TS = int64(ts)
			if member, ok := refused[r.UserID+"\x00"+r.Audience]; ok {
				switch {
				case r.Value != "":
					r.Member, r.Value = true, traitUnknown
				case member:
					return nil
				default:
					r.Member = true
				}
			}
			p.Diff.Snapshot++
			if r.Member {
				p.Diff.Members++
			}
			return w.Write(r)
		})
		if err != nil {
			w.Abort()
			return p, err
		}
	}
	if err := w.Close(); err != nil {
		return p, err
	}
	name := strings.TrimSuffix(p.Snapshot, ".parquet") + "-committed.parquet"
	if _, err := j.st.WriteFile(ctx, name, out, objstore.Overwrite); err != nil {
		return p, err
	}
	j.env.Log.Warn("changes refused by Convertro are not recorded as sent; the next sync tries them again", "count", len(refused))
	p.Replaced = p.Snapshot
	p.Snapshot = name
	return p, nil
}

// commit makes a delivered sync's snapshot current and removes what the
// previous one no longer needs.
func (j *audienceJob) commit(ctx context.Context, p audiencePendingFile) error {
	cur := audienceCurrentFile{Snapshot: p.Snapshot, Rows: p.Diff.Snapshot, Members: p.Diff.Members, Synced: j.env.Now().UTC()}
	data, _ := json.MarshalIndent(cur, "", "  ")
	if _, err := j.st.Write(ctx, audienceCurrent, data, objstore.Overwrite); err != nil {
		return err
	}
	if err := j.st.Delete(ctx, audiencePending); err != nil {
		return err
	}
	// Best effort: a leftover file costs space, not correctness.
	for _, name := range []string{p.Changes, p.Previous, p.Replaced} {
		if name != "" {
			if err := j.st.Delete(ctx, name); err != nil {
				j.env.Log.Warn("remove old audience file", "uri", j.st.URI(name), "err", err)
			}
		}
	}
	return nil
}

// dryRun diffs and writes the requests a sync would send, touching no state.
func (j *audienceJob) dryRun(ctx context.Context) (*pipeline.Report, error) {
	prev, err := j.currentSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	res, changes, _, err := j.diffFiles(ctx, prev)
	if err != nil {
		return nil, err
	}
	dec, err := openChanges(ctx, changes)
	if err != nil {
		return nil, err
	}
	defer dec.close()
	cfg := pipeline.Config{
		Job:     pipeline.JobID{Kind: "audience", Description: fmt.Sprintf("audience sync dry run: %d changes", res.Changes)},
		Objects: []pipeline.Object{{URI: changes, Key: "changes.parquet", Size: dec.size, RowGroups: dec.tbl.RowGroups()}},

		MaxURLBytes: MaxURLBytes,
	}
	deps := pipeline.Deps{Decoder: dec, NewTransform: newAudienceTransform(j.mapper, j.wire),
		Logger: j.env.Log, Now: j.env.Now}
	j.env.showProgress(&cfg, &deps)
	return runDry(ctx, cfg, deps, j.wire.BaseURL(), j.o.Out, j.env)
}

// changesDecoder implements pipeline.Decoder over a local changes file. Each
// row becomes an identify whose Property is the audience or trait key and
// the value to send.
type changesDecoder struct {
	src  *readers.Source
	file readers.File
	tbl  *readers.Table
	size int64
}

func openChanges(ctx context.Context, path string) (*changesDecoder, error) {
	src, err := readers.OpenSource(ctx, path, readers.SourceOptions{})
	if err != nil {
		return nil, err
	}
	l, err := src.Scan(ctx)
	if err != nil || len(l.Objects) != 1 {
		src.Close()
		if err == nil {
			err = fmt.Errorf("open changes %s: %w", path, readers.ErrNotFound)
		}
		return nil, err
	}
	f, err := src.Open(ctx, l.Objects[0])
	if err != nil {
		src.Close()
		return nil, err
	}
	tbl, err := readers.OpenTable(ctx, f, l.Objects[0])
	if err != nil {
		f.Close()
		src.Close()
		return nil, err
	}
	return &changesDecoder{src: src, file: f, tbl: tbl, size: l.Objects[0].Size}, nil
}

func (d *changesDecoder) close() {
	d.file.Close()
	d.src.Close()
}

// changesColumns are the columns of a changes or snapshot file
// (writers.Membership), in the order their readers expect.
var changesColumns = []string{"user_id", "audience", "member", "device_id", "ts", "value"}

func (d *changesDecoder) Decode(ctx context.Context, _ pipeline.Object, rowGroup int, fn func(firstRow int64, batch []segment.Message, skip []string) error) error {
	const size = 512
	batch := make([]segment.Message, 0, size)
	var arena []byte
	first := int64(0)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := fn(first, batch, nil)
		first += int64(len(batch))
		batch, arena = batch[:0], arena[:0]
		return err
	}
	keep := func(b []byte) []byte {
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	err := d.tbl.ReadRowGroup(ctx, rowGroup, changesColumns, func(_ int64, c []readers.Cell) error {
		ts, _ := readers.ParseNumber(c[4].Text)
		batch = append(batch, segment.Message{
			Type: segment.TypeIdentify, UserID: keep(c[0].Text), DeviceID: keep(c[3].Text), Timestamp: segment.At(int64(ts) * 1e6),
			Property: segment.Property{Key: keep(c[1].Text), Value: keep(traitWire(c[5].Text, c[2].Bool == segment.True))},
		})
		if len(batch) == size {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// newAudienceTransform maps a change (from changesDecoder) to its rule 18
// or rule 20 request.
func newAudienceTransform(m *convertro.Mapper, w *convertro.Wire) func() pipeline.Transform {
	return func() pipeline.Transform {
		var (
			ds  []convertro.Delivery
			buf []byte
		)
		return func(msg *segment.Message, emit func(url []byte)) string {
			var skip convertro.SkipReason
			ds, skip = m.MapTrait(ds[:0], msg, string(msg.Property.Key), msg.Property.Value)
			if skip != convertro.SkipNone {
				return skip.String()
			}
			for i := range ds {
				buf = w.AppendURLCut(buf[:0], &ds[i], MaxURLBytes+1) // see newTransform
				emit(buf)
			}
			return ""
		}
	}
}
