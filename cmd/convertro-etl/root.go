package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/convertro-etl/convertro-etl/internal/localfile"
	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// version is set at build time with -ldflags "-X main.version=…"; when it is
// not, buildVersion reads the module version or VCS revision Go stamped
// into the binary.
var version string

// buildVersion is the version the binary reports: -ldflags first, then the
// module version (go install …@v1.2.3), then the VCS revision the build was
// made from (+modified when the tree had changes), else "dev".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += "+modified"
	}
	return rev
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr, os.LookupEnv)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "convertro-etl:", err)
	}
	return exitCode(err)
}

// Process options: how the program logs, and the job file. They are not job
// options (jobs.Options), but take their environment variables the same way.
const (
	flagLogFormat = "log-format"
	flagLogLevel  = "log-level"
	flagConfig    = "config"
)

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

// newLogger is the logger --log-format and --log-level ask for.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, ok := logLevels[level]
	if !ok {
		return nil, fmt.Errorf("%w: --%s %q: want debug, info, warn or error", jobs.ErrConfig, flagLogLevel, level)
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("%w: --%s %q: want json or text", jobs.ErrConfig, flagLogFormat, format)
}

// fromEnv fills a flag the command line left unset from its environment
// variable.
func fromEnv(fs *pflag.FlagSet, name string, lookup func(string) (string, bool)) error {
	if fs.Changed(name) {
		return nil
	}
	v, ok := lookup(jobs.EnvName(name))
	if !ok || v == "" {
		return nil
	}
	if err := fs.Set(name, v); err != nil {
		return fmt.Errorf("%w: %s=%q: %w", jobs.ErrConfig, jobs.EnvName(name), v, err)
	}
	return nil
}

const rootLong = `convertro-etl delivers Segment events exported as Parquet (a local folder, or
gs://, s3:// or az:// object storage) to Convertro, and keeps a checkpoint
manifest so that a killed run resumes.

Every option is a flag, a key of the YAML job file (--config) and an environment
variable CONVERTRO_ETL_<FLAG> (upper case, - as _: --site-id is
CONVERTRO_ETL_SITE_ID; repeatable options take comma-separated values). A flag
wins over the environment, the environment over the job file, the job file over
the default; a list or map given by one of them replaces the others' whole.`

func newRootCmd(stdout, stderr io.Writer, lookup func(string) (string, bool)) *cobra.Command {
	var logFormat, logLevel string
	log := slog.New(slog.NewTextHandler(stderr, nil))
	root := &cobra.Command{
		Use:           "convertro-etl",
		Short:         "Deliver Segment events exported as Parquet to Convertro, resumably",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildVersion(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			for _, name := range []string{flagLogFormat, flagLogLevel} {
				if err := fromEnv(fs, name, lookup); err != nil {
					return err
				}
			}
			l, err := newLogger(stderr, logFormat, logLevel)
			if err != nil {
				return err
			}
			log = l
			return nil
		},
	}
	// Declared here, --version has no shorthand: cobra would make it -v.
	root.Flags().Bool("version", false, "print the version")
	pf := root.PersistentFlags()
	pf.StringVar(&logFormat, flagLogFormat, "text", "log lines as `json` or text ["+jobs.EnvName(flagLogFormat)+"]")
	pf.StringVar(&logLevel, flagLogLevel, "info", "least severe log lines written: debug, info, warn or error ["+jobs.EnvName(flagLogLevel)+"]")
	root.SetOut(stdout)
	root.SetErr(stderr)
	env := func() jobs.Env {
		return jobs.Env{
			Stdout:  stdout,
			Stderr:  stderr,
			Log:     log,
			Now:     time.Now,
			Version: root.Version,
		}
	}
	root.AddCommand(
		newRunCmd(env, lookup),
		newPlanCmd(env, lookup),
		newStatusCmd(env, lookup),
		newSimulateCmd(env),
		newGenerateCmd(env),
		newReplayCmd(env, lookup),
		newDeadLettersCmd(env),
	)
	return root
}

// jobFlags binds a subcommand's job options (jobs.OptionsFor) as flags, and
// resolves them: flag > environment > job file > default, for every option.
type jobFlags struct {
	command string
	fs      *pflag.FlagSet
	lookup  func(string) (string, bool)
	config  string
	// set holds what the flags say; only the flags the command line
	// changed are taken from it.
	set jobs.Options
}

func bindJobFlags(fs *pflag.FlagSet, command string, lookup func(string) (string, bool)) *jobFlags {
	f := &jobFlags{command: command, fs: fs, lookup: lookup}
	if command != jobs.CmdStatus {
		fs.StringVar(&f.config, flagConfig, "", "YAML job `file`: the same keys as the flags, ${VAR} expanded, paths relative to the file ["+jobs.EnvName(flagConfig)+"]")
	}
	for _, opt := range jobs.OptionsFor(command) {
		v := opt.Value(&f.set)
		for _, name := range []string{opt.Name, opt.FlagAlias} {
			if name == "" {
				continue
			}
			fl := fs.VarPF(v, name, "", opt.Help)
			fl.DefValue = opt.DefaultText()
			if v.IsBool() {
				fl.NoOptDefVal = "true"
			}
		}
		if opt.FlagAlias != "" {
			fs.MarkDeprecated(opt.FlagAlias, "use --"+opt.Name)
		}
	}
	return f
}

// options resolves the command's options; given reports whether any flag,
// variable or job file set one.
func (f *jobFlags) options() (o jobs.Options, given bool, err error) {
	o = jobs.Defaults()
	if f.command != jobs.CmdStatus {
		if err := fromEnv(f.fs, flagConfig, f.lookup); err != nil {
			return o, false, err
		}
	}
	takes := func(names []string) []string {
		return slices.DeleteFunc(names, func(n string) bool { return !jobs.Lookup(n).Takes(f.command) })
	}
	if f.config != "" {
		file, names, err := jobs.ReadJobFile(f.config, f.lookup)
		if err != nil {
			return o, false, err
		}
		jobs.Overlay(&o, file, takes(names))
		given = true
	}
	env, names, err := jobs.FromEnv(f.command, f.lookup)
	if err != nil {
		return o, false, err
	}
	jobs.Overlay(&o, env, names)
	given = given || len(names) > 0
	var changed []string
	for _, opt := range jobs.OptionsFor(f.command) {
		if f.fs.Changed(opt.Name) || opt.FlagAlias != "" && f.fs.Changed(opt.FlagAlias) {
			changed = append(changed, opt.Name)
		}
	}
	jobs.Overlay(&o, f.set, changed)
	given = given || len(changed) > 0
	return o, given, o.Check()
}

// writeReport writes the run's report as JSON to path (- for stdout).
func writeReport(path string, rep *pipeline.Report, stdout io.Writer) error {
	b, err := rep.JSON()
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = stdout.Write(b)
	} else {
		var o *localfile.Output
		if o, err = localfile.CreateOutput(path); err == nil {
			_, err = o.Write(b)
			if ferr := o.Finish(err == nil); err == nil {
				err = ferr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// withReport writes the report a run returned, whatever its outcome, when
// --report-json asks for it. A failure to write it fails a run that
// succeeded; after a failed run it is logged, and the run's error stands.
func withReport(o jobs.Options, e jobs.Env, rep *pipeline.Report, err error) error {
	if o.ReportJSON == "" || rep == nil {
		return err
	}
	werr := writeReport(o.ReportJSON, rep, e.Stdout)
	if werr == nil {
		return err
	}
	if err == nil {
		return werr
	}
	e.Log.Error("report not written", "err", werr)
	return err
}

// examples indents a command's examples for --help.
func examples(lines ...string) string {
	return "  " + strings.Join(lines, "\n  ")
}
