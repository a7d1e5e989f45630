package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
)

// ErrConfig marks a job that cannot start as configured: a missing or
// malformed setting, flag or job file.
var ErrConfig = errors.New("invalid configuration")

// Options is one job as the operator states it. Every field is an option
// declared once in the table (Table): its flag, job-file key, environment
// variable, default, help and checks come from there.
type Options struct {
	Kind    string   `json:"kind"`
	Sources []string `json:"sources"`
	State   string   `json:"-"`

	Endpoint   string                `json:"-"`
	Account    string                `json:"account"`
	ClientName string                `json:"clientName"`
	SiteID     string                `json:"siteId"`
	Domain     string                `json:"domain"`
	Events     map[string]EventNames `json:"events"`
	Hybrid     bool                  `json:"hybridAttributionModel"`
	// AnonymousIDAsDeviceID sends rows without a device id but with an
	// anonymous_id (web rows) with the anonymous_id as the device id.
	AnonymousIDAsDeviceID bool `json:"anonymousIdAsDeviceId"`

	From string `json:"from"`
	To   string `json:"to"`
	// Lookback is how far before From a run of a recurring job lists again,
	// for objects that landed after the run that covered their day (never
	// before the first day the state's job ever covered).
	Lookback time.Duration `json:"-"`
	// Type is the message type of files whose type cannot be told from
	// their columns or path; it does not override a type that can.
	Type string `json:"type"`

	DryRun bool   `json:"-"`
	Out    string `json:"-"`
	// ReportJSON names a file (or - for stdout) that receives the run's
	// report as JSON.
	ReportJSON string `json:"-"`

	Concurrency int           `json:"-"`
	Decoders    int           `json:"-"`
	Rate        float64       `json:"-"`
	Timeout     time.Duration `json:"-"`
	MaxAttempts int           `json:"-"`
	// ReadConcurrency bounds the ranged reads of input objects in flight at
	// once, apart from the decoders: remote storage answers each after tens
	// of milliseconds, so many are kept in flight.
	ReadConcurrency int `json:"-"`
	// MemoryBudget bounds, in MiB, the bytes of input objects held in
	// memory at once (readers.MemoryBudget): the row groups decoded and
	// read ahead, and the footers kept. 0: the default.
	MemoryBudget int64 `json:"-"`
	// FixedRate turns off adaptive throttling: Rate is then kept as given
	// even when Convertro answers 429.
	FixedRate bool `json:"-"`
	// MaxRequestsPerDay caps the requests sent per UTC day, across runs
	// (0 = none): at the cap the run stops, resumably, until the next day.
	MaxRequestsPerDay int64 `json:"-"`
	// DownAfter is how long Convertro may fail every request before the run
	// stops (resumably) instead of hammering a service that is down.
	DownAfter time.Duration `json:"-"`
	// LeaseTTL is how long the run's lease outlives its last commit.
	LeaseTTL    time.Duration `json:"-"`
	Shard       string        `json:"-"`
	Shards      int           `json:"-"`
	OnBadFile   string        `json:"-"`
	Fresh       bool          `json:"-"`
	MetricsPush string        `json:"-"`

	// Audience sync (kind audience): the audience keys the sync covers
	// (--audience, repeatable; required for an identifies export, whose
	// columns they name), the identifies export that gives device ids
	// (--devices), and the column names of a plain membership table.
	Audiences []string `json:"audiences,omitempty"`
	// Traits are the computed trait names the sync covers (--trait,
	// repeatable; required for an identifies export, whose columns they
	// name).
	Traits     []string          `json:"traits,omitempty"`
	Devices    string            `json:"devices,omitempty"`
	Membership MembershipColumns `json:"membership,omitempty"`
}

// EventNames is the right-hand side of one events entry: one Convertro name,
// or a list of them. In YAML either `Signed Up: signup` or `Signed Up: [a, b]`.
type EventNames []string

// UnmarshalYAML accepts a scalar or a sequence.
func (e *EventNames) UnmarshalYAML(b []byte) error {
	var one string
	if err := yaml.Unmarshal(b, &one); err == nil {
		*e = EventNames{one}
		return nil
	}
	var many []string
	if err := yaml.Unmarshal(b, &many); err != nil {
		return err
	}
	*e = many
	return nil
}

// LoadFile reads a YAML job file, expanding ${VAR} from the process
// environment; see ReadJobFile.
func LoadFile(path string) (Options, error) {
	o, _, err := ReadJobFile(path, os.LookupEnv)
	return o, err
}

// ReadJobFile reads a YAML job file and returns its options and the names of
// the options it sets. Before parsing, ${VAR} and ${VAR:-default} are
// replaced by the variable's value (lookup; an unset variable without a
// default is an error naming it; $${ is a literal ${; comment lines are left
// alone). Local paths (sources, state, out, devices, reportJson) are taken
// relative to the file's folder; URIs with a scheme are left as they are.
// Unknown keys are an error, so a typo does not silently fall back to a
// default.
func ReadJobFile(path string, lookup func(string) (string, bool)) (Options, []string, error) {
	var o Options
	b, err := os.ReadFile(path)
	if err != nil {
		return o, nil, fmt.Errorf("read job file %s: %w", path, err)
	}
	text, err := expandVars(string(b), lookup)
	if err != nil {
		return o, nil, fmt.Errorf("read job file %s: %w: %w", path, ErrConfig, err)
	}
	var raw map[string]yaml.RawMessage
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		return o, nil, fmt.Errorf("parse job file %s: %w: %w", path, ErrConfig, errors.New(yaml.FormatError(err, false, true)))
	}
	var set []string
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		opt := optionByKey(key)
		if opt == nil {
			return o, nil, fmt.Errorf("parse job file %s: %w: unknown key %q", path, ErrConfig, key)
		}
		if slices.Contains(set, opt.Name) {
			return o, nil, fmt.Errorf("parse job file %s: %w: key %q given twice (once as %q)", path, ErrConfig, opt.Key, opt.KeyAlias)
		}
		if err := yaml.UnmarshalWithOptions(raw[key], opt.Field(&o), yaml.Strict()); err != nil {
			return o, nil, fmt.Errorf("parse job file %s: %w: %s: %w", path, ErrConfig, key, errors.New(yaml.FormatError(err, false, false)))
		}
		if opt.Path {
			resolvePaths(opt.Field(&o), filepath.Dir(path))
		}
		set = append(set, opt.Name)
	}
	return o, set, nil
}

// expandVars replaces ${NAME} and ${NAME:-default} in a job file's text.
// Lines that are comments are copied as they are, so a commented-out line
// does not need its variables set.
func expandVars(text string, lookup func(string) (string, bool)) (string, error) {
	var out strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line)
			continue
		}
		for {
			i := strings.Index(line, "${")
			if i < 0 {
				out.WriteString(line)
				break
			}
			if i > 0 && line[i-1] == '$' { // $${ is a literal ${
				out.WriteString(line[:i-1] + "${")
				line = line[i+2:]
				continue
			}
			j := strings.IndexByte(line[i:], '}')
			if j < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", strings.TrimSpace(line))
			}
			ref := line[i+2 : i+j]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !validVarName(name) {
				return "", fmt.Errorf("${%s}: not a variable name", ref)
			}
			v, ok := lookup(name)
			switch {
			case hasDef && v == "":
				v = def
			case !ok:
				return "", fmt.Errorf("${%s}: environment variable %s is not set (give it a value, or a default with ${%s:-default})", name, name, name)
			}
			out.WriteString(line[:i] + v)
			line = line[i+j+1:]
		}
	}
	return out.String(), nil
}

func validVarName(s string) bool {
	for i, c := range s {
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// resolvePaths makes the local paths of a job file's path option (a string
// or a list) relative to the file's folder. "-" (stdout) and URIs with a
// scheme (gs://, file://) are left alone.
func resolvePaths(field any, dir string) {
	resolve := func(p string) string {
		if p == "" || p == "-" || filepath.IsAbs(p) || hasScheme(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	switch f := field.(type) {
	case *string:
		*f = resolve(*f)
	case *[]string:
		for i := range *f {
			(*f)[i] = resolve((*f)[i])
		}
	}
}

// hasScheme reports a URI such as gs://bucket/x or file:///x. A one-letter
// scheme is a Windows drive, not a URI.
func hasScheme(s string) bool {
	i := strings.Index(s, "://")
	if i < 2 {
		return false
	}
	for _, c := range s[:i] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// withDefaults fills what the operator left out with the table's defaults
// (a library caller's zero field means "the default").
func (o Options) withDefaults() Options {
	for _, opt := range table {
		f := reflect.ValueOf(opt.Field(&o)).Elem()
		if f.IsZero() {
			f.Set(reflect.ValueOf(opt.Default))
		}
	}
	return o
}

func (o Options) validate() error {
	if len(o.Sources) == 0 {
		return fmt.Errorf("%w: no source: give --source URI (%s)", ErrConfig, objstore.Forms())
	}
	if err := o.Check(); err != nil {
		return err
	}
	if err := checkKind(o); err != nil {
		return err
	}
	if o.DryRun && o.Out == "" {
		return fmt.Errorf("%w: --dry-run needs --out FILE (or - for stdout)", ErrConfig)
	}
	if !o.DryRun && o.Out != "" {
		return fmt.Errorf("%w: --out %s is the dry run's output: give --dry-run too (a live run writes no requests file)", ErrConfig, o.Out)
	}
	if o.Out == "-" && o.ReportJSON == "-" {
		return fmt.Errorf("%w: --out - and --report-json - would both write to stdout: name a file for one of them", ErrConfig)
	}
	return nil
}

// DefaultLookback is how far back a run of a recurring job looks for late
// objects when --lookback is not given.
const DefaultLookback = 72 * time.Hour

// Fingerprint identifies the recurring job a state location holds: its kind
// and sources. Not its date range, which moves from run to run, nor its
// settings, which Settings names one by one so that a change can be told
// (and refused while the state holds unfinished work).
func (o Options) Fingerprint() string {
	srcs := append([]string(nil), o.Sources...)
	sort.Strings(srcs)
	id := struct {
		Kind    string   `json:"kind"`
		Sources []string `json:"sources"`
	}{o.Kind, srcs}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(id)
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:12])
}

// identity is a digest of the fingerprint and the settings together: one
// exact job, for the records that must match it whole (an audience sync's
// pending changes).
func (o Options) identity() string {
	b, _ := json.Marshal(o.Settings())
	sum := sha256.Sum256(append([]byte(o.Fingerprint()+"\x00"), b...))
	return hex.EncodeToString(sum[:12])
}

// Settings are the values that decide what the job sends, by the names an
// operator gives them (job-file keys): a change of any of them on a state
// with unfinished work is refused, naming it.
func (o Options) Settings() map[string]string {
	events, _ := json.Marshal(o.Events) // maps encode with sorted keys: stable
	if len(o.Events) == 0 {
		events = nil
	}
	s := map[string]string{
		"account":    o.Account,
		"clientName": o.ClientName,
		"siteId":     o.SiteID,
		"domain":     o.Domain,
		"events":     string(events),
		"hybrid":     strconv.FormatBool(o.Hybrid),
		"type":       o.Type,
	}
	// Named only when on: a state written before the option existed holds
	// no such key, which reads as "" and so as off, the same as now, and
	// its unfinished work resumes without a settings change.
	if o.AnonymousIDAsDeviceID {
		s[keyAnonymousIDAsDeviceID] = "true"
	}
	return s
}

func day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}

// Option declares one option, once: cmd derives its flag, the job file its
// key, the environment its variable, withDefaults its default and Check its
// range from this declaration. To add an option: a field in Options and an
// entry in table; nothing else.
type Option struct {
	// Name is the flag (--name) and the option's name in messages.
	Name string
	// Key is the job-file key.
	Key string
	// Help is the one-line help of --help. A word in `backquotes` names
	// the flag's value there (pflag's convention).
	Help string
	// Default is the value a run takes when no layer sets it, of the
	// field's type.
	Default any
	// For lists the subcommands that take the option.
	For []string
	// Field returns a pointer to the option's field in o.
	Field func(o *Options) any
	// Path: a local path in a job file is relative to the file's folder.
	Path bool
	// Check returns why a value is out of range (nil when it is not).
	Check func(v any) error
	// FlagAlias and KeyAlias are older spellings, still accepted
	// (the flag hidden and marked deprecated).
	FlagAlias, KeyAlias string
}

// Env is the option's environment variable: CONVERTRO_ETL_ and the name in
// upper case, dashes as underscores (--site-id: CONVERTRO_ETL_SITE_ID).
func (opt *Option) Env() string { return EnvName(opt.Name) }

// EnvName is the environment variable of the option or flag name.
func EnvName(name string) string {
	return "CONVERTRO_ETL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Value is the option's field in o, settable from text.
func (opt *Option) Value(o *Options) Value { return Value{opt.Field(o)} }

// DefaultText is the default as --help shows it ("" for a zero default).
func (opt *Option) DefaultText() string {
	d := reflect.New(reflect.TypeOf(opt.Default))
	d.Elem().Set(reflect.ValueOf(opt.Default))
	if d.Elem().IsZero() {
		return ""
	}
	return Value{d.Interface()}.String()
}

// Takes reports whether the subcommand takes the option.
func (opt *Option) Takes(command string) bool { return slices.Contains(opt.For, command) }

// Subcommands that take job options.
const (
	CmdRun    = "run"
	CmdPlan   = "plan"
	CmdReplay = "replay"
	CmdStatus = "status"
)

var (
	runPlan       = []string{CmdRun, CmdPlan}
	runPlanReplay = []string{CmdRun, CmdPlan, CmdReplay}
	runReplay     = []string{CmdRun, CmdReplay}
	runOnly       = []string{CmdRun}
)

// The web-rows option's flag and key, which the report and plan name.
const (
	flagAnonymousIDAsDeviceID = "anonymous-id-as-device-id"
	keyAnonymousIDAsDeviceID  = "anonymousIdAsDeviceId"
)

// table declares every option of Options, in --help order.
var table = []*Option{
	{Name: "kind", Key: "kind", FlagAlias: "job", Default: "backfill", For: runPlan,
		Help:  "kind of job (the list is filled in by kind.go)",
		Field: func(o *Options) any { return &o.Kind }},
	{Name: "source", Key: "sources", Default: []string(nil), For: runPlan, Path: true,
		Help:  "source `URI`: " + objstore.Forms() + " (repeatable)",
		Field: func(o *Options) any { return &o.Sources }},
	{Name: "state", Key: "state", Default: "./.convertro-state", For: []string{CmdRun, CmdReplay, CmdStatus}, Path: true,
		Help:  "state location for the manifest, report and dead letters: " + objstore.Forms(),
		Field: func(o *Options) any { return &o.State }},
	{Name: "endpoint", Key: "endpoint", Default: "", For: runReplay,
		Help:  "Convertro base `URL` (overrides https://{domain})",
		Field: func(o *Options) any { return &o.Endpoint }},
	{Name: "account", Key: "account", Default: "", For: runPlanReplay,
		Help:  "Convertro account name",
		Field: func(o *Options) any { return &o.Account }},
	{Name: "client-name", Key: "clientName", Default: "", For: runPlanReplay,
		Help:  "Convertro client name",
		Field: func(o *Options) any { return &o.ClientName }},
	{Name: "site-id", Key: "siteId", Default: "", For: runPlanReplay,
		Help:  "Convertro site id",
		Field: func(o *Options) any { return &o.SiteID }},
	{Name: "domain", Key: "domain", Default: "", For: runPlanReplay,
		Help:  "Convertro tracking domain, e.g. acme.sp1.convertro.com",
		Field: func(o *Options) any { return &o.Domain }},
	{Name: "event", Key: "events", Default: map[string]EventNames(nil), For: runPlan,
		Help:  `event mapping "Segment name=Convertro name" (repeatable)`,
		Field: func(o *Options) any { return &o.Events }},
	{Name: "hybrid", Key: "hybrid", KeyAlias: "hybridAttributionModel", Default: false, For: runPlanReplay,
		Help:  "hybrid attribution model: also send sale with sale.new/sale.repeat",
		Field: func(o *Options) any { return &o.Hybrid }},
	{Name: flagAnonymousIDAsDeviceID, Key: keyAnonymousIDAsDeviceID, Default: false, For: runPlan,
		Help:  "send rows that have an anonymous_id but no context_device_id (web rows) with the anonymous_id as the Convertro device id (sid); it will not match the id Convertro's own browser tag sets",
		Field: func(o *Options) any { return &o.AnonymousIDAsDeviceID }},
	{Name: "from", Key: "from", Default: "", For: runPlan,
		Help:  "first `day` to read (YYYY-MM-DD, today, yesterday, UTC): of day partitions, or of event times in objects whose path has no day",
		Field: func(o *Options) any { return &o.From }},
	{Name: "to", Key: "to", Default: "", For: runPlan,
		Help:  "last `day` to read, inclusive (see --from)",
		Field: func(o *Options) any { return &o.To }},
	{Name: "lookback", Key: "lookback", Default: DefaultLookback, For: runPlan, Check: atLeast(0),
		Help:  "how far back before --from a recurring run looks for late-arriving objects",
		Field: func(o *Options) any { return &o.Lookback }},
	{Name: "type", Key: "type", Default: "", For: runPlan, Check: messageType,
		Help:  "message `type` of files whose type cannot be told from their columns or path (identify, track, page, screen, group, alias); detected types are kept",
		Field: func(o *Options) any { return &o.Type }},
	{Name: "dry-run", Key: "dryRun", Default: false, For: runOnly,
		Help:  "send nothing; write the requests to --out",
		Field: func(o *Options) any { return &o.DryRun }},
	{Name: "out", Key: "out", Default: "", For: runOnly, Path: true,
		Help:  "dry-run output `file`, one JSON line per request (- for stdout); only with --dry-run",
		Field: func(o *Options) any { return &o.Out }},
	{Name: "report-json", Key: "reportJson", Default: "", For: runOnly, Path: true,
		Help:  "write the run's report as JSON to `file` (- for stdout), also for dry, failed and stopped runs",
		Field: func(o *Options) any { return &o.ReportJSON }},
	{Name: "concurrency", Key: "concurrency", Default: 64, For: runReplay, Check: atLeast(1),
		Help:  "requests in flight at once",
		Field: func(o *Options) any { return &o.Concurrency }},
	{Name: "decoders", Key: "decoders", Default: 0, For: runOnly, Check: atLeast(0),
		Help:  "row groups decoded at once (0: the number of CPUs)",
		Field: func(o *Options) any { return &o.Decoders }},
	{Name: "read-concurrency", Key: "readConcurrency", Default: readers.DefaultReadConcurrency, For: runOnly, Check: atLeast(1),
		Help:  "ranged reads of input objects in flight at once, apart from the decoders (remote storage answers each after tens of ms; from local disk no row group is read ahead)",
		Field: func(o *Options) any { return &o.ReadConcurrency }},
	{Name: "memory-budget", Key: "memoryBudget", Default: int64(readers.DefaultMemoryBudget >> 20), For: runOnly, Check: atLeast(readers.MinMemoryBudget >> 20),
		Help:  "`MiB` of input objects held in memory at once: the row groups being decoded and read ahead, and the footers kept; a row group larger than a decoder's share is streamed",
		Field: func(o *Options) any { return &o.MemoryBudget }},
	{Name: "rate", Key: "rate", Default: 0.0, For: runReplay, Check: atLeast(0),
		Help:  "requests per second across all senders (0: unlimited)",
		Field: func(o *Options) any { return &o.Rate }},
	{Name: "fixed-rate", Key: "fixedRate", Default: false, For: runReplay,
		Help:  "keep --rate as given: no slowing down when Convertro answers 429",
		Field: func(o *Options) any { return &o.FixedRate }},
	{Name: "max-requests-per-day", Key: "maxRequestsPerDay", Default: int64(0), For: runOnly, Check: atLeast(0),
		Help:  "stop (resumably, exit 3) when this many requests were sent in the UTC day; the next day's run continues (0: no cap)",
		Field: func(o *Options) any { return &o.MaxRequestsPerDay }},
	{Name: "timeout", Key: "timeout", Default: convertro.DefaultTimeout, For: runReplay, Check: above(0),
		Help:  "per-request timeout",
		Field: func(o *Options) any { return &o.Timeout }},
	{Name: "max-attempts", Key: "maxAttempts", Default: 0, For: runReplay, Check: atLeast(0),
		Help:  "attempts per request before the run stops (0: no count; a request is retried until --down-after)",
		Field: func(o *Options) any { return &o.MaxAttempts }},
	{Name: "down-after", Key: "downAfter", Default: 5 * time.Minute, For: runReplay, Check: above(0),
		Help:  "stop (resumably, exit 1) when Convertro has accepted nothing this long, or one request has failed this long",
		Field: func(o *Options) any { return &o.DownAfter }},
	{Name: "lease-ttl", Key: "leaseTTL", Default: pipeline.DefaultLeaseTTL, For: runReplay, Check: above(0),
		Help:  "how long the lease outlives the last commit",
		Field: func(o *Options) any { return &o.LeaseTTL }},
	{Name: "shard", Key: "shard", Default: "", For: runPlanReplay, Check: shardSpec,
		Help:  "this process's shard `i/n` (default 0/1, or from JOB_COMPLETION_INDEX / CLOUD_RUN_TASK_INDEX)",
		Field: func(o *Options) any { return &o.Shard }},
	{Name: "shards", Key: "shards", Default: 0, For: runPlan, Check: atLeast(0),
		Help:  "shard count when the index comes from JOB_COMPLETION_INDEX",
		Field: func(o *Options) any { return &o.Shards }},
	{Name: "on-bad-file", Key: "onBadFile", Default: "fail", For: runPlan, Check: oneOf("fail", "skip"),
		Help:  "what a bad input file does: fail or skip",
		Field: func(o *Options) any { return &o.OnBadFile }},
	{Name: "fresh", Key: "fresh", Default: false, For: runOnly,
		Help:  "discard the state's manifest and start over",
		Field: func(o *Options) any { return &o.Fresh }},
	{Name: "metrics-push", Key: "metricsPush", Default: "", For: runOnly,
		Help:  "Prometheus Pushgateway `URL` to push the run's counters to, every 15 s and at the end, grouped by job and shard",
		Field: func(o *Options) any { return &o.MetricsPush }},
	{Name: "audience", Key: "audiences", Default: []string(nil), For: runOnly,
		Help:  "audience job: audience `key` the sync covers (repeatable; names the columns of an identifies export)",
		Field: func(o *Options) any { return &o.Audiences }},
	{Name: "trait", Key: "traits", Default: []string(nil), For: runOnly,
		Help:  "audience job: computed trait `name` the sync covers (repeatable; names the columns of an identifies export)",
		Field: func(o *Options) any { return &o.Traits }},
	{Name: "devices", Key: "devices", Default: "", For: runOnly, Path: true,
		Help:  "audience job: identifies export giving each user's latest device id (" + objstore.Forms() + ")",
		Field: func(o *Options) any { return &o.Devices }},
	{Name: "membership", Key: "membership", Default: MembershipColumns{}, For: runOnly,
		Help:  "audience job: a column name of a membership table, FIELD=COLUMN with FIELD userId, audience, member, deviceId or timestamp (repeatable)",
		Field: func(o *Options) any { return &o.Membership }},
}

// Table is every option, in --help order. The declarations are shared:
// callers read them, never change them.
func Table() []*Option { return table }

// OptionsFor returns the options the subcommand takes, in --help order.
func OptionsFor(command string) []*Option {
	var out []*Option
	for _, opt := range table {
		if opt.Takes(command) {
			out = append(out, opt)
		}
	}
	return out
}

// Lookup returns the option of that name (its flag), or nil.
func Lookup(name string) *Option {
	for _, opt := range table {
		if opt.Name == name {
			return opt
		}
	}
	return nil
}

func optionByKey(key string) *Option {
	for _, opt := range table {
		if opt.Key == key || opt.KeyAlias != "" && opt.KeyAlias == key {
			return opt
		}
	}
	return nil
}

// Defaults returns Options holding every option's default.
func Defaults() Options { return Options{}.withDefaults() }

// FromEnv reads the CONVERTRO_ETL_* variables of the subcommand's options
// and returns them with the names of the options they set. An empty
// variable counts as unset.
func FromEnv(command string, lookup func(string) (string, bool)) (Options, []string, error) {
	var o Options
	var set []string
	for _, opt := range OptionsFor(command) {
		s, ok := lookup(opt.Env())
		if !ok || s == "" {
			continue
		}
		if err := opt.Value(&o).setEnv(s); err != nil {
			return o, nil, fmt.Errorf("%w: %s=%q: %w", ErrConfig, opt.Env(), s, err)
		}
		set = append(set, opt.Name)
	}
	return o, set, nil
}

// Overlay replaces the named options' fields of dst with src's, whole: a
// list or the events map given by a higher layer replaces the lower one's.
func Overlay(dst *Options, src Options, names []string) {
	for _, name := range names {
		opt := Lookup(name)
		if opt == nil {
			panic("jobs: Overlay of unknown option " + name)
		}
		reflect.ValueOf(opt.Field(dst)).Elem().Set(reflect.ValueOf(opt.Field(&src)).Elem())
	}
}

// Check refuses a value out of its option's range, naming the flag.
func (o Options) Check() error {
	for _, opt := range table {
		if opt.Check == nil {
			continue
		}
		p := opt.Field(&o)
		if err := opt.Check(reflect.ValueOf(p).Elem().Interface()); err != nil {
			return fmt.Errorf("%w: --%s %s: %w", ErrConfig, opt.Name, Value{p}, err)
		}
	}
	return nil
}

// number returns a numeric option's value as a float64.
func number(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	case time.Duration:
		return float64(n)
	}
	panic(fmt.Sprintf("jobs: range check of a %T", v))
}

func atLeast(min float64) func(any) error {
	return func(v any) error {
		if n := number(v); !(n >= min) { // NaN too
			if _, ok := v.(time.Duration); ok {
				return fmt.Errorf("want %s or more", time.Duration(min))
			}
			return fmt.Errorf("want %g or more", min)
		}
		return nil
	}
}

func above(min float64) func(any) error {
	return func(v any) error {
		if n := number(v); !(n > min) {
			if _, ok := v.(time.Duration); ok {
				return fmt.Errorf("want more than %s", time.Duration(min))
			}
			return fmt.Errorf("want more than %g", min)
		}
		return nil
	}
}

func oneOf(vals ...string) func(any) error {
	return func(v any) error {
		if !slices.Contains(vals, v.(string)) {
			return fmt.Errorf("want %s", strings.Join(vals, " or "))
		}
		return nil
	}
}

func messageType(v any) error {
	if s := v.(string); s != "" && segment.ParseType(s) == segment.TypeUnknown {
		return errors.New("want identify, track, page, screen, group or alias")
	}
	return nil
}

func shardSpec(v any) error {
	if s := v.(string); s != "" {
		if _, err := pipeline.ParseShard(s); err != nil {
			return errors.New("want i/n with i below n, such as 0/4")
		}
	}
	return nil
}
