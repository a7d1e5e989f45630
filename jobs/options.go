package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/convertro-etl/convertro-etl/pipeline"
)

// ErrConfig marks a job that cannot start as configured: a missing or
// malformed setting, flag or job file.
var ErrConfig = errors.New("invalid configuration")

// Options is one job as the operator states it. A YAML job file holds the same
// keys as the run flags; flags given on the command line win over the file.
type Options struct {
	Kind    string   `yaml:"kind" json:"kind"`
	Sources []string `yaml:"sources" json:"sources"`
	State   string   `yaml:"state" json:"-"`

	Endpoint   string                `yaml:"endpoint" json:"-"`
	Account    string                `yaml:"account" json:"account"`
	ClientName string                `yaml:"clientName" json:"clientName"`
	SiteID     string                `yaml:"siteId" json:"siteId"`
	Domain     string                `yaml:"domain" json:"domain"`
	Events     map[string]EventNames `yaml:"events" json:"events"`
	Hybrid     bool                  `yaml:"hybridAttributionModel" json:"hybridAttributionModel"`

	From string `yaml:"from" json:"from"`
	To   string `yaml:"to" json:"to"`
	// Lookback is how far before From a run of a recurring job lists again,
	// for objects that landed after the run that covered their day (never
	// before the first day the state's job ever covered).
	Lookback time.Duration `yaml:"lookback" json:"-"`
	// Type forces the message type of every file whose type cannot be detected.
	Type string `yaml:"type" json:"type"`

	DryRun bool   `yaml:"dryRun" json:"-"`
	Out    string `yaml:"out" json:"-"`

	Concurrency int           `yaml:"concurrency" json:"-"`
	Decoders    int           `yaml:"decoders" json:"-"`
	Rate        float64       `yaml:"rate" json:"-"`
	Timeout     time.Duration `yaml:"timeout" json:"-"`
	MaxAttempts int           `yaml:"maxAttempts" json:"-"`
	// FixedRate turns off adaptive throttling: Rate is then kept as given
	// even when Convertro answers 429.
	FixedRate bool `yaml:"fixedRate" json:"-"`
	// MaxRequestsPerDay caps the requests sent per UTC day, across runs
	// (0 = none): at the cap the run stops, resumably, until the next day.
	MaxRequestsPerDay int64 `yaml:"maxRequestsPerDay" json:"-"`
	// DownAfter is how long Convertro may fail every request before the run
	// stops (resumably) instead of hammering a service that is down.
	DownAfter time.Duration `yaml:"downAfter" json:"-"`
	// LeaseTTL is how long the run's lease outlives its last commit.
	LeaseTTL    time.Duration `yaml:"leaseTTL" json:"-"`
	Shard       string        `yaml:"shard" json:"-"`
	Shards      int           `yaml:"shards" json:"-"`
	OnBadFile   string        `yaml:"onBadFile" json:"-"`
	Fresh       bool          `yaml:"-" json:"-"`
	MetricsPush string        `yaml:"metricsPush" json:"-"`

	// Audience sync (kind audience): the audience keys the sync covers
	// (--audience, repeatable; required for an identifies export, whose
	// columns they name), the identifies export that gives device ids
	// (--devices), and the column names of a plain membership table.
	Audiences  []string          `yaml:"audiences" json:"audiences,omitempty"`
	Devices    string            `yaml:"devices" json:"devices,omitempty"`
	Membership MembershipColumns `yaml:"membership" json:"membership,omitempty"`
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

// LoadFile reads a YAML job file. Unknown keys are an error, so a typo does
// not silently fall back to a default.
func LoadFile(path string) (Options, error) {
	var o Options
	b, err := os.ReadFile(path)
	if err != nil {
		return o, fmt.Errorf("read job file %s: %w", path, err)
	}
	if err := yaml.UnmarshalWithOptions(b, &o, yaml.Strict()); err != nil {
		return o, fmt.Errorf("parse job file %s: %w: %w", path, ErrConfig, errors.New(yaml.FormatError(err, false, true)))
	}
	return o, nil
}

// AddEvent adds one `--event "Segment name=Convertro name"` mapping.
func (o *Options) AddEvent(spec string) error {
	name, to, ok := strings.Cut(spec, "=")
	name, to = strings.TrimSpace(name), strings.TrimSpace(to)
	if !ok || name == "" || to == "" {
		return fmt.Errorf("--event %q: %w: want \"Segment name=Convertro name\"", spec, ErrConfig)
	}
	if o.Events == nil {
		o.Events = map[string]EventNames{}
	}
	o.Events[name] = append(o.Events[name], to)
	return nil
}

// withDefaults fills what the operator left out.
func (o Options) withDefaults() Options {
	if o.Kind == "" {
		o.Kind = "backfill"
	}
	if o.State == "" {
		o.State = "./.convertro-state"
	}
	if o.OnBadFile == "" {
		o.OnBadFile = "fail"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DownAfter == 0 {
		o.DownAfter = 5 * time.Minute
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = pipeline.DefaultLeaseTTL
	}
	if o.Lookback == 0 {
		o.Lookback = DefaultLookback
	}
	return o
}

func (o Options) validate() error {
	if len(o.Sources) == 0 {
		return fmt.Errorf("%w: no source: give --source URI (a path, file://… or gs://bucket/prefix)", ErrConfig)
	}
	switch o.OnBadFile {
	case "fail", "skip":
	default:
		return fmt.Errorf("%w: --on-bad-file %q: want fail or skip", ErrConfig, o.OnBadFile)
	}
	switch o.Kind {
	case "backfill":
	case "audience":
	case "migration":
	default:
		return fmt.Errorf("%w: kind %q: want backfill, audience or migration", ErrConfig, o.Kind)
	}
	if o.MaxRequestsPerDay < 0 {
		return fmt.Errorf("%w: --max-requests-per-day %d: want 0 (no cap) or more", ErrConfig, o.MaxRequestsPerDay)
	}
	if o.MaxRequestsPerDay > 0 && o.Kind == "audience" {
		return fmt.Errorf("%w: --max-requests-per-day applies to backfill and migration jobs, not to an audience sync", ErrConfig)
	}
	if o.DryRun && o.Out == "" {
		return fmt.Errorf("%w: --dry-run needs --out FILE (or - for stdout)", ErrConfig)
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
	return map[string]string{
		"account":                o.Account,
		"clientName":             o.ClientName,
		"siteId":                 o.SiteID,
		"domain":                 o.Domain,
		"events":                 string(events),
		"hybridAttributionModel": strconv.FormatBool(o.Hybrid),
		"type":                   o.Type,
	}
}

func day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}

// Merge overlays on file the values of flags that the operator set on the
// command line (changed reports whether the flag of that name was given), so
// that flags win over the job file and the file wins over defaults.
func Merge(file, flags Options, changed func(flag string) bool) Options {
	o := file
	set := func(flag string, apply func()) {
		if changed(flag) {
			apply()
		}
	}
	set("job", func() { o.Kind = flags.Kind })
	set("source", func() { o.Sources = flags.Sources })
	set("state", func() { o.State = flags.State })
	set("endpoint", func() { o.Endpoint = flags.Endpoint })
	set("account", func() { o.Account = flags.Account })
	set("client-name", func() { o.ClientName = flags.ClientName })
	set("site-id", func() { o.SiteID = flags.SiteID })
	set("domain", func() { o.Domain = flags.Domain })
	set("hybrid", func() { o.Hybrid = flags.Hybrid })
	set("dry-run", func() { o.DryRun = flags.DryRun })
	set("out", func() { o.Out = flags.Out })
	set("from", func() { o.From = flags.From })
	set("to", func() { o.To = flags.To })
	set("type", func() { o.Type = flags.Type })
	set("concurrency", func() { o.Concurrency = flags.Concurrency })
	set("decoders", func() { o.Decoders = flags.Decoders })
	set("rate", func() { o.Rate = flags.Rate })
	set("max-requests-per-day", func() { o.MaxRequestsPerDay = flags.MaxRequestsPerDay })
	set("timeout", func() { o.Timeout = flags.Timeout })
	set("max-attempts", func() { o.MaxAttempts = flags.MaxAttempts })
	set("fixed-rate", func() { o.FixedRate = flags.FixedRate })
	set("down-after", func() { o.DownAfter = flags.DownAfter })
	set("lease-ttl", func() { o.LeaseTTL = flags.LeaseTTL })
	set("shard", func() { o.Shard = flags.Shard })
	set("shards", func() { o.Shards = flags.Shards })
	set("on-bad-file", func() { o.OnBadFile = flags.OnBadFile })
	set("metrics-push", func() { o.MetricsPush = flags.MetricsPush })
	set("audience", func() { o.Audiences = flags.Audiences })
	set("devices", func() { o.Devices = flags.Devices })
	o.Fresh = flags.Fresh
	if flags.Events != nil {
		if o.Events == nil {
			o.Events = map[string]EventNames{}
		}
		for k, v := range flags.Events {
			o.Events[k] = append(o.Events[k], v...)
		}
	}
	return o
}
