package jobs

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
)

// A Kind is one kind of job an operator runs (--job, the job file's kind).
// What differs between kinds is here; a field left nil means "as a backfill
// does". Adding a kind is a file that declares its Kind and its line in
// kinds: validation, dispatch, plan, replay and --job's help all read that
// list.
type Kind struct {
	// Name is the kind's value of --job and of a job file's kind, and what
	// manifests record.
	Name string
	// Summary, when set, follows the name in --job's help: what the kind
	// covers that its name does not say.
	Summary string
	// Check refuses options the kind cannot honour (nil: none). It runs
	// after the checks every kind shares.
	Check func(o Options) error
	// Run runs or resumes the job (nil: the backfill engine).
	Run func(ctx context.Context, o Options, env Env) (*pipeline.Report, error)
	// NoPlan, when set, is why plan does not list this kind's work and
	// what to use instead.
	NoPlan string
	// Order compares two listed objects in the order the job sends them
	// (nil: by URI). It decides the plan's order from the listing alone,
	// before the footers are read in that order.
	Order func(a, b readers.Object) int
	// PrintPlan writes what plan says of this kind beyond the objects and
	// shards (nil: nothing more).
	PrintPlan func(ctx context.Context, w io.Writer, p *prepared, mine []pipeline.Unit)
	// NoReplay, when set, is why replay leaves this kind's dead letters
	// alone (logged for each shard that has some).
	NoReplay string
}

// kinds lists every kind, the default first.
var kinds []*Kind

// The list is made in init, not in its declaration: a kind's Run reads the
// options table, whose --job help names the kinds, and Go refuses that
// cycle between package variables.
func init() {
	kinds = []*Kind{&backfillKind, &audienceKind, &migrationKind}
	Lookup("kind").Help = "kind of job: " + kindHelp()
}

// kindNamed returns the kind called name, or nil.
func kindNamed(name string) *Kind {
	for _, k := range kinds {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// kindNames lists the kinds for messages and help: "backfill, audience or
// migration".
func kindNames() string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// kindHelp is kindNames with each kind's summary.
func kindHelp() string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
		if k.Summary != "" {
			names[i] += " (" + k.Summary + ")"
		}
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// checkKind refuses an unknown kind, and options the kind cannot honour.
func checkKind(o Options) error {
	k := kindNamed(o.Kind)
	if k == nil {
		return fmt.Errorf("%w: kind %q: want %s", ErrConfig, o.Kind, kindNames())
	}
	if k.Check != nil {
		return k.Check(o)
	}
	return nil
}
