package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

var (
	// ErrJobMismatch: the state location holds an unfinished job that is not
	// the one asked for (other sources, range or settings). Refuse unless the
	// operator asked for a fresh start.
	ErrJobMismatch = errors.New("state holds a different unfinished job")
	// ErrBadManifest: a manifest could not be decoded, has a version this
	// program does not know, or belongs to another shard than its name says.
	ErrBadManifest = errors.New("unreadable manifest")
)

// ManifestVersion is the version of the manifest document this program
// writes. Decoding refuses newer versions rather than dropping what it does
// not understand and writing the rest back.
//
// Version 2 added the recurring-job ledger (Settings, Day, CoveredFrom,
// Pruned, CycleStart) and MaybeRepeated; a version 1 manifest is read, its
// repeat bound carried over as MaybeRepeated. Version 3 pins objects by an
// opaque version string (an S3 or Azure ETag is not a number); the numeric
// generation of versions 1 and 2 is read as its decimal form, which is what
// the GCS and local backends list, so an older manifest resumes unchanged.
// Version 4 keeps the plan in an object of its own (Plan) and commits only
// the progress (Progress), and shards by object (Shard.Owns) rather than by
// row group: an unfinished sharded manifest of an earlier version is
// refused (see prepareManifest). Version 5 adds an object's time filter
// (PlannedObject.Filter), which an earlier version would drop and so read
// rows the plan leaves out, and Tables, the Delta table versions a plan was
// listed from. Version 6 stores the plan in parts (Parts), so that a plan
// that grows while the run goes (objects appended as their footers are
// read) writes only what it adds; a version 5 manifest's single Plan is
// read as one part. A program that knows only version 5 refuses a version
// 6 manifest (ErrBadManifest, naming the versions it knows).
const ManifestVersion = 6

// Shard selects a stable share of a job's units: this process runs shard
// Index of Count. The zero value is invalid; a single process is 0/1.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// String is the "i/n" form that --shard takes.
func (s Shard) String() string { return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count) }

// ParseShard parses "i/n", with 0 <= i < n; errors wrap ErrInvalidShard.
func ParseShard(s string) (Shard, error) { return parseShard(s) }

func (s Shard) valid() bool { return s.Count >= 1 && s.Index >= 0 && s.Index < s.Count }

// ManifestName is the state object that holds shard s's manifest.
func ManifestName(s Shard) string {
	return "manifest-" + strconv.Itoa(s.Index) + "-of-" + strconv.Itoa(s.Count) + ".json"
}

// parseManifestName is ManifestName's inverse.
func parseManifestName(name string) (Shard, bool) {
	rest, ok := strings.CutPrefix(name, "manifest-")
	if !ok {
		return Shard{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".json")
	if !ok {
		return Shard{}, false
	}
	i, n, ok := strings.Cut(rest, "-of-")
	if !ok {
		return Shard{}, false
	}
	var s Shard
	var err1, err2 error
	s.Index, err1 = strconv.Atoi(i)
	s.Count, err2 = strconv.Atoi(n)
	if err1 != nil || err2 != nil || !s.valid() || ManifestName(s) != name {
		return Shard{}, false
	}
	return s, true
}

// JobID identifies a job. jobs computes Fingerprint from what makes a job
// the same recurring job (kind and sources; not its date range, which
// changes from run to run); Settings are the values that decide what is
// sent (client name, site id, events, ...), by name, so that a change can be
// named; Description is the human version, for messages.
type JobID struct {
	Kind        string            `json:"kind"`
	Fingerprint string            `json:"fingerprint"`
	Description string            `json:"description,omitempty"`
	Settings    map[string]string `json:"settings,omitempty"`
}

// Counts are the totals of a shard's work across all its runs.
type Counts struct {
	RowsRead         int64            `json:"rows_read"`
	RowsDelivered    int64            `json:"rows_delivered"`
	RowsDeadLettered int64            `json:"rows_dead_lettered"`
	RowsSkipped      map[string]int64 `json:"rows_skipped,omitempty"` // by reason

	RequestsSent         int64 `json:"requests_sent"`
	RequestsAcked        int64 `json:"requests_acked"`
	RequestsDeadLettered int64 `json:"requests_dead_lettered"`
	// RequestsRetried counts retries after timeouts and connection errors;
	// the first attempt may have reached Convertro, so each is a possible
	// duplicate.
	RequestsRetried    int64 `json:"requests_retried"`
	PossibleDuplicates int64 `json:"possible_duplicates"`
	// RequestsReplayed counts dead-lettered requests that a later replay
	// sent again and Convertro accepted: they moved from dead-lettered to
	// acked (and their rows, once none of their requests stays dead, from
	// dead-lettered to delivered). Requests sent still counts each once.
	RequestsReplayed int64 `json:"requests_replayed,omitempty"`

	ObjectsSkipped int64 `json:"objects_skipped"`

	// DeadLetterGroups are the dead-lettered requests by kind of refusal
	// (DeadLetterClass: "401 Unauthorized"), each with the start of its
	// first answer; at most MaxDeadLetterGroups kinds and DeadLetterOther.
	DeadLetterGroups map[string]DeadLetterGroup `json:"dead_letter_groups,omitempty"`
}

// PlannedObject is one input object as the plan pinned it. A run that finds
// another version or size stops rather than mix two versions.
type PlannedObject struct {
	URI     string `json:"uri"`
	Key     string `json:"key"`
	Size    int64  `json:"size"`
	Version string `json:"version"` // objstore.Attrs.Version: GCS generation, ETag, local modification time
	// Generation is the numeric version of manifests before version 3,
	// read only: decodeManifest moves it to Version.
	Generation int64   `json:"generation,omitempty"`
	RowGroups  []int64 `json:"row_groups"`        // rows of each row group
	Skipped    string  `json:"skipped,omitempty"` // why the object was set aside as bad
	Day        string  `json:"day,omitempty"`     // partition day (YYYY-MM-DD), "" when the path has none
	// Filter is the rows and row groups the plan reads of an object whose
	// path names no day (Object.Filter); nil for all.
	Filter *TimeFilter `json:"time_filter,omitempty"`
}

// TableVersion is a table (a Delta table's folder) and the version of it a
// plan was listed from.
type TableVersion struct {
	URI     string `json:"uri"`
	Version int64  `json:"version"`
}

// Manifest is the checkpoint of one shard of one job: the plan, each unit's
// progress, the counts and the lease. It is a versioned JSON document,
// written whole by one Checkpoint.
type Manifest struct {
	Version int    `json:"version"`
	Job     JobID  `json:"job"`
	Shard   Shard  `json:"shard"`
	Status  string `json:"status"` // StatusRunning, StatusFinished, StatusFailed, StatusStopped
	// Objects and Units are the plan and each unit's progress, in memory.
	// Version 4 stores them apart (see Plan and Progress); versions 1 to 3
	// held them here, written whole at every commit.
	Objects []PlannedObject `json:"objects,omitempty"`
	Units   []UnitProgress  `json:"units,omitempty"` // this shard's units, in plan order

	// Plan names the state object that holds the objects and units
	// (versions 4 and 5): immutable, named by its content. Version 6 reads
	// it as its only part and writes Parts instead.
	Plan string `json:"plan,omitempty"`
	// Parts name the state objects that hold the plan (version 6), in plan
	// order: each immutable, named by its content, holding the objects and
	// units appended after those of the parts before it. A segment of
	// objects planned while the run goes adds one part; a change to what
	// earlier parts hold (an object planned again, the ledger pruned)
	// rewrites the plan as one part at the next Begin.
	Parts []string `json:"plan_parts,omitempty"`
	// stored is how much of Objects and Units the parts hold; edited, that
	// what they hold was changed in place since.
	stored struct{ objects, units int }
	edited bool
	// Progress is the units' progress in compact form (version 4): runs of
	// units done, and the few units with partial progress. A commit writes
	// this, whose size follows the work in flight, not the job's size.
	Progress *UnitRanges `json:"progress,omitempty"`
	// SetAside names the objects set aside as unreadable (version 4; the
	// plan object does not change when one is).
	SetAside []SetAside `json:"set_aside,omitempty"`
	// RowsDone and RowsTotal summarise the units (RowsProgress), for
	// readers that do not load the plan (ListManifests).
	RowsDone  int64  `json:"rows_done,omitempty"`
	RowsTotal int64  `json:"rows_total,omitempty"`
	Counts    Counts `json:"counts"`
	Lease     Lease  `json:"lease"`
	// Runs is how many invocations worked on the shard (resumes = Runs-1).
	Runs int `json:"runs"`
	// Window is the largest number of requests any run had sent but not yet
	// committed: the most a kill can cause to be sent twice.
	Window int `json:"window"`
	// Reopened counts the runs that started from a finished manifest to
	// retry objects set aside: they follow no interrupted run, so they are
	// not resumes and add nothing to the repeat bound.
	Reopened int `json:"reopened,omitempty"`
	// DeadLetterFiles are the dead-letter files of the job's runs, each
	// recorded by the commit that counted its rows.
	DeadLetterFiles []string  `json:"dead_letter_files,omitempty"`
	Created         time.Time `json:"created"`
	Updated         time.Time `json:"updated"`

	// DailyRequests counts the requests queued for sending by UTC day
	// (YYYY-MM-DD), across runs: what Config.MaxRequestsPerDay is held to
	// (see ErrCapReached for what counts as a request).
	DailyRequests map[string]int64 `json:"daily_requests,omitempty"`
	// DailyCap is the MaxRequestsPerDay of the last run (0 = none), for
	// status to estimate the days left.
	DailyCap int64 `json:"daily_cap,omitempty"`
	// ActiveSeconds is the time runs spent on the shard, from each run's
	// start to its last commit: with the rows done, the rate status
	// estimates the time left from.
	ActiveSeconds float64 `json:"active_seconds,omitempty"`

	// CoveredFrom is the earliest first day (YYYY-MM-DD) any run of the job
	// asked for: a run looks back for late objects as far as its lookback,
	// but not before what the job ever covered.
	CoveredFrom string `json:"covered_from,omitempty"`
	// Pruned is what the ledger no longer lists: finished objects that left
	// the range the runs list (see mergeListing).
	Pruned Pruned `json:"pruned,omitzero"`
	// CycleStart is the counts when the job last went from finished to
	// running: a run reports incomplete for the dead letters of its own
	// cycle, not for those of every earlier night.
	CycleStart Counts `json:"cycle_start,omitzero"`
	// Tables are the Delta tables the plan was listed from, each with the
	// version read: a run that resumes unfinished work lists them at these
	// versions, so that commits made since (an OPTIMIZE that rewrote the
	// files in the plan) cannot put the same rows in the plan twice.
	Tables []TableVersion `json:"tables,omitempty"`

	// MaybeRepeated is the most requests earlier runs may have sent whose
	// rows were not committed, and so were sent again: a window for each run
	// that was killed with work left, and for each clean stop exactly the
	// requests it left in flight (none for a finished run).
	MaybeRepeated int64 `json:"maybe_repeated,omitempty"`
}

// RowsProgress is the rows the shard's units hold and how many of them are
// done (acknowledged, dead-lettered or skipped). A unit of a replaced
// version of an object set aside counts only what was read of it.
func (m *Manifest) RowsProgress() (done, total int64) {
	if m.Units == nil && m.Progress != nil {
		return m.RowsDone, m.RowsTotal // a summary: the plan is not loaded
	}
	for _, u := range m.Units {
		if u.Retired {
			total += u.Acked()
			done += u.Acked()
			continue
		}
		total += u.Rows
		if u.Done {
			done += u.Rows
		} else {
			done += u.Acked()
		}
	}
	return done, total
}

// marked is the rows the manifest records as done, pruned ones included.
func (m *Manifest) marked() int64 { return markedRows(m.Units) + m.Pruned.Rows }

// decodeManifest decodes data read from uri; errors wrap ErrBadManifest.
func decodeManifest(uri string, data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode manifest %s: %w: %w", uri, ErrBadManifest, err)
	}
	if m.Version < 1 || m.Version > ManifestVersion {
		return nil, fmt.Errorf("decode manifest %s: %w: version %d, this program knows 1 to %d: "+
			"the job was run by a newer version of this program; run it with that version or a later one",
			uri, ErrBadManifest, m.Version, ManifestVersion)
	}
	if m.Version < 6 && m.Plan != "" {
		m.Parts, m.Plan = []string{m.Plan}, ""
	}
	if m.Version == 1 {
		// Version 1 bounded repeats by a window per resume.
		m.MaybeRepeated = int64(m.Window) * int64(max(m.Runs-1-m.Reopened, 0))
	}
	if m.Version < 3 {
		for i := range m.Objects {
			o := &m.Objects[i]
			if o.Version == "" && o.Generation != 0 {
				o.Version = strconv.FormatInt(o.Generation, 10)
			}
			o.Generation = 0
		}
	}
	return &m, nil
}

// ReadManifest reads shard's manifest, its plan included, without touching
// its lease. A shard that never ran is objstore.ErrNotFound.
func ReadManifest(ctx context.Context, st StateStore, shard Shard) (*Manifest, error) {
	m, err := readManifestSummary(ctx, st, shard)
	if err != nil {
		return nil, err
	}
	if err := loadPlan(ctx, st, m); err != nil {
		return nil, err
	}
	return m, nil
}

// readManifestSummary reads shard's manifest without its plan: Objects and
// Units are nil (for a version 4 manifest), and RowsProgress and AllDone
// answer from the summary it holds.
func readManifestSummary(ctx context.Context, st StateStore, shard Shard) (*Manifest, error) {
	data, _, err := st.Read(ctx, ManifestName(shard))
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(st.URI(ManifestName(shard)), data)
	if err != nil {
		return nil, err
	}
	if m.Shard != shard {
		return nil, fmt.Errorf("decode manifest %s: %w: it holds shard %s", st.URI(ManifestName(shard)), ErrBadManifest, m.Shard)
	}
	return m, nil
}

// ListManifests reads every shard's manifest in st, ordered by shard count
// then index, as summaries: without their plans (see readManifestSummary),
// so that status costs one small read per shard whatever the job's size.
// A store that cannot list gets an error.
func ListManifests(ctx context.Context, st StateStore) ([]*Manifest, error) {
	l, ok := st.(stateLister)
	if !ok {
		return nil, fmt.Errorf("list manifests in %s: the state store cannot list", st.URI(""))
	}
	names, err := l.ListKeys(ctx, "manifest-")
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	var ms []*Manifest
	for _, name := range names {
		shard, ok := parseManifestName(name)
		if !ok {
			continue
		}
		m, err := readManifestSummary(ctx, st, shard)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *Manifest) int {
		return cmp.Or(cmp.Compare(a.Shard.Count, b.Shard.Count), cmp.Compare(a.Shard.Index, b.Shard.Index))
	})
	return ms, nil
}
