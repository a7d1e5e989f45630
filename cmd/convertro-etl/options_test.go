package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/spf13/pflag"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

func noEnv(string) (string, bool) { return "", false }

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var jobCommands = []string{jobs.CmdRun, jobs.CmdPlan, jobs.CmdReplay, jobs.CmdStatus}

// sample is the i-th test value of an option in flag syntax (i = 0 for the
// job file, 1 for the environment, 2 for the flag): the first differs from
// the default, each from the one before, and each passes the option's check.
func sample(opt *jobs.Option, i int) string {
	switch opt.Name {
	case "kind":
		return []string{"migration", "audience", "backfill"}[i]
	case "type":
		return []string{"identify", "track", "page"}[i]
	case "shard":
		return []string{"0/2", "1/2", "2/3"}[i]
	case "on-bad-file":
		return []string{"skip", "fail", "skip"}[i]
	case "event":
		return fmt.Sprintf("Signed Up=name%d", i)
	case "membership":
		return fmt.Sprintf("userId=col%d", i)
	case "memory-budget":
		return strconv.Itoa(i + 8) // MiB: at least 4
	}
	switch opt.Value(&jobs.Options{}).Type() {
	case "bool":
		return []string{"true", "false", "true"}[i]
	case "int":
		return strconv.Itoa(i + 2)
	case "float":
		return fmt.Sprintf("%d.5", i+1)
	case "duration":
		return fmt.Sprintf("%ds", i+2)
	}
	return fmt.Sprintf("gs://b/%s-%d", opt.Name, i) // a URI: a job file's path resolution leaves it alone
}

// parsed is the field value the sample stands for.
func parsed(t *testing.T, opt *jobs.Option, s string) any {
	t.Helper()
	var o jobs.Options
	if err := opt.Value(&o).Set(s); err != nil {
		t.Fatalf("sample %q of --%s: %v", s, opt.Name, err)
	}
	return reflect.ValueOf(opt.Field(&o)).Elem().Interface()
}

// TestEveryOptionReachesOptions takes every option of every subcommand from
// its default, the job file, the environment and the flag, in turn, each
// layer over the ones below: flag > environment > job file > default.
func TestEveryOptionReachesOptions(t *testing.T) {
	for _, command := range jobCommands {
		for _, opt := range jobs.OptionsFor(command) {
			t.Run(command+"/"+opt.Name, func(t *testing.T) {
				field := func(o jobs.Options) any { return reflect.ValueOf(opt.Field(&o)).Elem().Interface() }
				resolve := func(env map[string]string, args ...string) jobs.Options {
					t.Helper()
					fs := pflag.NewFlagSet(command, pflag.ContinueOnError)
					f := bindJobFlags(fs, command, mapEnv(env))
					if err := fs.Parse(args); err != nil {
						t.Fatal(err)
					}
					o, _, err := f.options()
					if err != nil {
						t.Fatal(err)
					}
					return o
				}
				check := func(layer string, got, want any) {
					t.Helper()
					if !reflect.DeepEqual(got, want) {
						t.Errorf("from the %s: %#v, want %#v", layer, got, want)
					}
				}
				check("default", field(resolve(nil)), opt.Default)

				var args []string
				if command != jobs.CmdStatus { // status reads no job file
					b, err := yaml.Marshal(map[string]any{opt.Key: parsed(t, opt, sample(opt, 0))})
					if err != nil {
						t.Fatal(err)
					}
					file := filepath.Join(t.TempDir(), "job.yaml")
					if err := os.WriteFile(file, b, 0o644); err != nil {
						t.Fatal(err)
					}
					args = []string{"--config", file}
					check("job file", field(resolve(nil, args...)), parsed(t, opt, sample(opt, 0)))
				}
				env := map[string]string{opt.Env(): sample(opt, 1)}
				check("environment", field(resolve(env, args...)), parsed(t, opt, sample(opt, 1)))
				args = append(args, "--"+opt.Name+"="+sample(opt, 2))
				check("flag", field(resolve(env, args...)), parsed(t, opt, sample(opt, 2)))
			})
		}
	}
}

// TestSubcommandsListOnlyTheirOptions: a subcommand has a flag for each
// option it takes and none for the others, and its help shows examples.
func TestSubcommandsListOnlyTheirOptions(t *testing.T) {
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{}, noEnv)
	for _, command := range jobCommands {
		cmd, _, err := root.Find([]string{command})
		if err != nil {
			t.Fatal(err)
		}
		for _, opt := range jobs.Table() {
			has := cmd.Flags().Lookup(opt.Name) != nil
			if has != opt.Takes(command) {
				t.Errorf("%s has flag --%s: %v, but takes it: %v", command, opt.Name, has, opt.Takes(command))
			}
		}
		if cmd.Example == "" {
			t.Errorf("%s --help has no examples", command)
		}
	}
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"plan", "--help"}, &stdout, &stdout); code != 0 {
		t.Fatalf("plan --help: exit %d", code)
	}
	for _, ignored := range []string{"--concurrency", "--dry-run", "--rate", "--lease-ttl"} {
		if strings.Contains(stdout.String(), ignored) {
			t.Errorf("plan --help lists %s, which plan ignores:\n%s", ignored, stdout.String())
		}
	}
	stdout.Reset()
	run(context.Background(), []string{"replay", "--help"}, &stdout, &stdout)
	for _, ignored := range []string{"--source", "--dry-run", "--from", "--on-bad-file", "--event"} {
		if strings.Contains(stdout.String(), ignored) {
			t.Errorf("replay --help lists %s, which replay ignores:\n%s", ignored, stdout.String())
		}
	}
	if !strings.Contains(stdout.String(), "Examples:") {
		t.Errorf("replay --help has no examples:\n%s", stdout.String())
	}
}

// TestOutNeedsDryRun: --out without --dry-run is refused rather than
// running live and writing nothing.
func TestOutNeedsDryRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "requests.jsonl")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"run", "--source", dir, "--client-name", "c", "--site-id", "1", "--out", out}, &stderr, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--out") || !strings.Contains(stderr.String(), "--dry-run") {
		t.Errorf("exit %d, want 1 naming --out and --dry-run:\n%s", code, stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s exists: %v", out, err)
	}
}

// TestRangesRefused: values out of range are refused with the flag's name,
// from a flag or from the environment.
func TestRangesRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ flag, value string }{
		{"rate", "-1"}, {"rate", "NaN"}, {"concurrency", "-1"}, {"concurrency", "0"}, {"decoders", "-1"},
		{"timeout", "-1s"}, {"timeout", "0s"}, {"down-after", "-5m"}, {"lease-ttl", "0s"}, {"max-attempts", "-1"},
		{"max-requests-per-day", "-1"}, {"shard", "3/2"}, {"shard", "x"}, {"shards", "-1"}, {"lookback", "-1h"},
		{"type", "purchase"}, {"on-bad-file", "maybe"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"run", "--source", dir, "--" + tc.flag + "=" + tc.value}, &stderr, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "--"+tc.flag+" ") {
				t.Errorf("exit %d, want 1 naming --%s:\n%s", code, tc.flag, stderr.String())
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		t.Setenv("CONVERTRO_ETL_CONCURRENCY", "-3")
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"plan", "--source", "../../jobs/sample", "--account", "a"}, &stderr, &stderr)
		if code != 0 { // plan does not take --concurrency: its variable is not read
			t.Errorf("plan: exit %d:\n%s", code, stderr.String())
		}
		stderr.Reset()
		code = run(context.Background(), []string{"run", "--source", dir}, &stderr, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "--concurrency -3") {
			t.Errorf("run: exit %d, want 1 naming --concurrency:\n%s", code, stderr.String())
		}
	})
}

// TestTypeOnlyWhereUndetectable: --type identify leaves the types that the
// sample's folders and columns tell as they are (it used to turn every file
// into identifies).
func TestTypeOnlyWhereUndetectable(t *testing.T) {
	plan := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"plan", "--account", "a", "--source", "../../jobs/sample"}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("plan %v: exit %d:\n%s", args, code, stderr.String())
		}
		// The fingerprint names the settings, --type among them: leave it out.
		var lines []string
		for _, l := range strings.Split(stdout.String(), "\n") {
			if !strings.HasPrefix(l, "fingerprint") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	detected := plan()
	if !strings.Contains(detected, "\ttrack\t") && !strings.Contains(detected, " track ") {
		t.Fatalf("the sample plan shows no track file:\n%s", detected)
	}
	if hinted := plan("--type", "identify"); hinted != detected {
		t.Errorf("--type identify changed detected types:\n%s\nwant\n%s", hinted, detected)
	}
}

// TestRepeatableOptionsReplace: --source and --event given on the command
// line replace the job file's list and map; they do not add to them.
func TestRepeatableOptionsReplace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(file, []byte("sources: [gs://b/a, gs://b/b]\nevents:\n  Signed Up: signup\n  Order Placed: order\naudiences: [x, y]\n"), 0o644)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	f := bindJobFlags(fs, jobs.CmdRun, mapEnv(map[string]string{"CONVERTRO_ETL_AUDIENCE": "z"}))
	if err := fs.Parse([]string{"--config", file, "--source", "gs://b/c", "--event", "Signed Up=register"}); err != nil {
		t.Fatal(err)
	}
	o, _, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Sources, []string{"gs://b/c"}) {
		t.Errorf("sources %v, want [gs://b/c]", o.Sources)
	}
	if want := map[string]jobs.EventNames{"Signed Up": {"register"}}; !reflect.DeepEqual(o.Events, want) {
		t.Errorf("events %v, want %v", o.Events, want)
	}
	if !reflect.DeepEqual(o.Audiences, []string{"z"}) {
		t.Errorf("audiences %v, want [z] from the environment", o.Audiences)
	}
}

// TestOneVocabulary: every option's key is its flag in camelCase (plural for
// a list or map); the older spellings --job and hybridAttributionModel
// still work.
func TestOneVocabulary(t *testing.T) {
	for _, opt := range jobs.Table() {
		camel := ""
		for i, w := range strings.Split(opt.Name, "-") {
			if i > 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			camel += w
		}
		if !strings.EqualFold(opt.Key, camel) && !(opt.Value(&jobs.Options{}).Repeatable() && strings.EqualFold(opt.Key, camel+"s")) {
			t.Errorf("--%s has key %q, want %q", opt.Name, opt.Key, camel)
		}
	}
	file := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(file, []byte("hybridAttributionModel: true\nfresh: true\n"), 0o644)
	var stderr bytes.Buffer
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(&stderr)
	f := bindJobFlags(fs, jobs.CmdRun, noEnv)
	if err := fs.Parse([]string{"--config", file, "--job", "migration"}); err != nil {
		t.Fatal(err)
	}
	o, _, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != "migration" || !o.Hybrid || !o.Fresh {
		t.Errorf("kind %q hybrid %v fresh %v, want migration, true, true", o.Kind, o.Hybrid, o.Fresh)
	}
	if !strings.Contains(stderr.String(), "use --kind") {
		t.Errorf("--job is not marked deprecated: %q", stderr.String())
	}
}

// TestJobFileVariablesAndPaths: ${VAR} and ${VAR:-default} are expanded, an
// unset variable is an error naming it, and local paths are relative to the
// job file's folder while URIs stay as they are.
func TestJobFileVariablesAndPaths(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "jobs")
	os.MkdirAll(dir, 0o755)
	file := filepath.Join(dir, "job.yaml")
	os.WriteFile(file, []byte(`# endpoint: ${NOT_SET_AND_COMMENTED_OUT}
sources: [data/tracks, gs://b/${BUCKET_PREFIX}/x, /abs/y, file:///abs/z]
state: ../state
devices: ${DEVICES:-identifies}
out: "-"
reportJson: report.json
account: ${ACCOUNT}
clientName: "$${literal}"
siteId: ${SITE:-12}
`), 0o644)
	env := map[string]string{"BUCKET_PREFIX": "exports", "ACCOUNT": "acme"}
	o, set, err := jobs.ReadJobFile(file, mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	want := jobs.Options{
		Sources:    []string{filepath.Join(dir, "data/tracks"), "gs://b/exports/x", "/abs/y", "file:///abs/z"},
		State:      filepath.Join(filepath.Dir(dir), "state"),
		Devices:    filepath.Join(dir, "identifies"),
		Out:        "-",
		ReportJSON: filepath.Join(dir, "report.json"),
		Account:    "acme",
		ClientName: "${literal}",
		SiteID:     "12",
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("job file = %+v\nwant       %+v", o, want)
	}
	if len(set) != 8 {
		t.Errorf("options set %v, want 8", set)
	}
	delete(env, "ACCOUNT")
	if _, _, err := jobs.ReadJobFile(file, mapEnv(env)); err == nil || !strings.Contains(err.Error(), "ACCOUNT") {
		t.Errorf("unset variable: err = %v, want one naming ACCOUNT", err)
	}
}

// TestLogFormatAndLevel: --log-format json (or its variable) writes log
// lines as JSON objects; --log-level error leaves the warning out.
func TestLogFormatAndLevel(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.parquet"), []byte("not parquet at all"), 0o644)
	plan := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"plan", "--account", "a", "--source", dir, "--on-bad-file", "skip"}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("plan: exit %d\n%s", code, stderr.String())
		}
		return stderr.String()
	}
	checkJSON := func(out string) {
		t.Helper()
		sc := bufio.NewScanner(strings.NewReader(out))
		n := 0
		for sc.Scan() {
			var line struct{ Level, Msg, Object string }
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
			}
			if line.Level == "WARN" && line.Msg == "skipping bad file" && strings.HasSuffix(line.Object, "bad.parquet") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d JSON warnings about bad.parquet, want 1:\n%s", n, out)
		}
	}
	checkJSON(plan("--log-format", "json"))
	if out := plan("--log-format", "json", "--log-level", "error"); out != "" {
		t.Errorf("--log-level error wrote:\n%s", out)
	}
	t.Setenv("CONVERTRO_ETL_LOG_FORMAT", "json")
	checkJSON(plan())
	if out := plan("--log-format", "text"); !strings.Contains(out, "level=WARN") {
		t.Errorf("--log-format text over the variable wrote:\n%s", out)
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"plan", "--source", dir, "--log-level", "loud"}, &stderr, &stderr); code != 1 || !strings.Contains(stderr.String(), "--log-level") {
		t.Errorf("bad level: exit %d:\n%s", code, stderr.String())
	}
}

// TestVersion: --version prints the version; -v is not a shorthand for it.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), buildVersion()) {
		t.Errorf("--version: exit %d, %q", code, stdout.String())
	}
	if code := run(context.Background(), []string{"-v"}, &stdout, &stderr); code != 1 {
		t.Errorf("-v: exit %d, want 1 (unknown shorthand)", code)
	}
	if buildVersion() == "" {
		t.Error("empty version")
	}
}

// TestReportJSON: --report-json writes the report of a dry run, and of a run
// that stops at the daily cap (exit 3).
func TestReportJSON(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 300, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	sim := simulator.New(simulator.Options{})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	defer sim.Close()
	args := []string{"run", "--source", export, "--state", filepath.Join(dir, "state"), "--account", "a", "--client-name", "c",
		"--site-id", "1", "--endpoint", srv.URL, "--event", "Signed Up=signup"}
	report := func(path string) map[string]any {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("report %s: %v\n%s", path, err, b)
		}
		return m
	}
	var stdout, stderr bytes.Buffer
	code := run(ctx, append(args, "--dry-run", "--out", filepath.Join(dir, "dry.jsonl"), "--report-json", "-"), &stdout, &stderr)
	var dry map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &dry); code != 0 || err != nil || len(dry) == 0 {
		t.Fatalf("dry run: exit %d, report on stdout %v (%v):\n%s", code, dry, err, stderr.String())
	}
	capped := filepath.Join(dir, "capped.json")
	code = run(ctx, append(args, "--max-requests-per-day", "5", "--report-json", capped), &stdout, &stderr)
	if code != exitLater {
		t.Fatalf("capped run: exit %d, want %d:\n%s", code, exitLater, stderr.String())
	}
	if m := report(capped); len(m) == 0 {
		t.Errorf("capped run's report is empty")
	}
}
