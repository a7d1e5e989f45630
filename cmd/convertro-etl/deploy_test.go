package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	run1 "google.golang.org/api/run/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// The deploy files are checked here with what runs without a cluster or a
// container engine: each manifest is decoded strictly into its engine's own
// API types (a misspelt or misplaced field fails), the fields sharding
// depends on are compared, and the container's command line and environment
// are run as the engine would run them: one process per shard index, with
// the index variable the engine sets, on a local export and state.

const deployDir = "../../deploy"

// decodeStrict decodes one YAML document into v through JSON, refusing any
// field v's type does not have: the API types' JSON names are the schema.
func decodeStrict(doc any, v any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// yamlDocs reads every document of a YAML file.
func yamlDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// shardsArg is the value of --shards in a container's args, which must
// parse with the run command's own flags.
func shardsArg(t *testing.T, args []string) int {
	t.Helper()
	root := newRootCmd(io.Discard, io.Discard, noEnv)
	cmd, rest, err := root.Find(args)
	if err != nil || cmd.Name() != "run" {
		t.Fatalf("args %q: command %v, %v; want run", args, cmd.Name(), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("args %q: %v", args, err)
	}
	f := cmd.Flags().Lookup("shards")
	if f == nil || !f.Changed {
		t.Fatalf("args %q: no --shards", args)
	}
	n, err := strconv.Atoi(f.Value.String())
	if err != nil || n < 1 {
		t.Fatalf("args %q: --shards %q", args, f.Value.String())
	}
	for _, name := range []string{"shard", "source", "state", "endpoint"} {
		if cmd.Flags().Changed(name) {
			// The job file or the environment says these, so that one
			// file serves every shard and a test can point them here.
			t.Errorf("args %q set --%s", args, name)
		}
	}
	return n
}

// engineVars are the variables the engines set themselves: a manifest that
// set one would override the engine's (or the test's).
var engineVars = []string{"JOB_COMPLETION_INDEX", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "CLOUD_RUN_TASK_ATTEMPT"}

// exitAction is what a Job's podFailurePolicy does with a container that
// exits with code: the first rule that matches, else Count (a retry, up to
// backoffLimitPerIndex).
func exitAction(p *batchv1.PodFailurePolicy, container string, code int32) batchv1.PodFailurePolicyAction {
	for _, r := range p.Rules {
		e := r.OnExitCodes
		if e == nil || (e.ContainerName != nil && *e.ContainerName != container) {
			continue
		}
		if slices.Contains(e.Values, code) == (e.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) {
			return r.Action
		}
	}
	return batchv1.PodFailurePolicyActionCount
}

// TestDeployKubernetes: deploy/kubernetes.yaml is a ServiceAccount, a
// ConfigMap holding the job file and a CronJob whose Job is an Indexed Job
// with completions = parallelism = --shards, a retry budget per shard, a
// pod failure policy that does not retry exit 2 and does not count exit 3,
// no overlap of two Jobs, a non-root read-only container, and a service
// account set up for Workload Identity (IRSA shown). Its pods, run as the
// Job controller would (JOB_COMPLETION_INDEX 0..n-1, at once), deliver the
// job exactly once.
func TestDeployKubernetes(t *testing.T) {
	var (
		sa   *corev1.ServiceAccount
		cm   *corev1.ConfigMap
		cron *batchv1.CronJob
	)
	for _, doc := range yamlDocs(t, "kubernetes.yaml") {
		var err error
		switch kind := fmt.Sprint(doc["apiVersion"], " ", doc["kind"]); kind {
		case "v1 ServiceAccount":
			sa = &corev1.ServiceAccount{}
			err = decodeStrict(doc, sa)
		case "v1 ConfigMap":
			cm = &corev1.ConfigMap{}
			err = decodeStrict(doc, cm)
		case "batch/v1 CronJob":
			cron = &batchv1.CronJob{}
			err = decodeStrict(doc, cron)
		default:
			t.Fatalf("unexpected document %s", kind)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", doc["kind"], doc["metadata"], err)
		}
	}
	if sa == nil || cm == nil || cron == nil {
		t.Fatalf("want a ServiceAccount, a ConfigMap and a CronJob")
	}

	if cron.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy %q, want Forbid", cron.Spec.ConcurrencyPolicy)
	}
	job := cron.Spec.JobTemplate.Spec
	pod := job.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	n := shardsArg(t, c.Args)
	if job.CompletionMode == nil || *job.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed", job.CompletionMode)
	}
	if job.Completions == nil || job.Parallelism == nil {
		t.Fatal("completions and parallelism must be set")
	}
	if int(*job.Completions) != n || int(*job.Parallelism) != n {
		t.Errorf("completions %d, parallelism %d, --shards %d: want all equal", *job.Completions, *job.Parallelism, n)
	}
	if job.BackoffLimitPerIndex == nil || *job.BackoffLimitPerIndex < 1 {
		t.Errorf("backoffLimitPerIndex %v, want at least one retry per shard", job.BackoffLimitPerIndex)
	}
	if d := job.ActiveDeadlineSeconds; d == nil || *d >= 24*3600 {
		// With Forbid, a Job still running at the next schedule skips it.
		t.Errorf("activeDeadlineSeconds %v, want the daily Job ended before the next", d)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q, want Never (podFailurePolicy needs it)", pod.RestartPolicy)
	}
	p := job.PodFailurePolicy
	if p == nil {
		t.Fatal("no podFailurePolicy")
	}
	for code, want := range map[int32]batchv1.PodFailurePolicyAction{
		1: batchv1.PodFailurePolicyActionCount, 2: batchv1.PodFailurePolicyActionFailIndex,
		3: batchv1.PodFailurePolicyActionIgnore, 134: batchv1.PodFailurePolicyActionCount,
	} {
		if got := exitAction(p, c.Name, code); got != want {
			t.Errorf("exit %d: podFailurePolicy action %s, want %s", code, got, want)
		}
	}
	disruption := false
	for _, r := range p.Rules {
		for _, pc := range r.OnPodConditions {
			disruption = disruption || pc.Type == corev1.DisruptionTarget && r.Action == batchv1.PodFailurePolicyActionIgnore
		}
	}
	if !disruption {
		t.Error("podFailurePolicy counts evictions and preemptions (DisruptionTarget) against the shard")
	}

	uid := dockerfileUser(t)
	sc, csc := pod.SecurityContext, c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != uid {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and runAsUser %d, the image's user", sc, uid)
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext %+v: want no privilege escalation, a read-only root", csc)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	if mounts["/tmp"] == "" {
		t.Error("no volume at /tmp: with a read-only root, audience syncs and S3 uploads have nowhere to spill")
	}
	var manifestEnv []string
	for _, e := range c.Env {
		if slices.Contains(engineVars, e.Name) {
			t.Errorf("env sets %s, which Kubernetes sets for each pod", e.Name)
		}
		manifestEnv = append(manifestEnv, e.Name+"="+e.Value)
	}
	checkMemLimit(t, manifestEnv, c.Resources.Limits.Memory().String())
	if pod.ServiceAccountName != sa.Name || sa.Namespace != cron.Namespace || cm.Namespace != cron.Namespace {
		t.Errorf("service account %q in %q, CronJob in %q: want the manifest's own", pod.ServiceAccountName, sa.Namespace, cron.Namespace)
	}
	if !strings.HasSuffix(sa.Annotations["iam.gke.io/gcp-service-account"], ".iam.gserviceaccount.com") {
		t.Errorf("service account annotations %v: no Workload Identity", sa.Annotations)
	}
	if raw, _ := os.ReadFile(filepath.Join(deployDir, "kubernetes.yaml")); !bytes.Contains(raw, []byte("eks.amazonaws.com/role-arn: arn:aws:iam::")) {
		t.Error("no IRSA example (eks.amazonaws.com/role-arn)")
	}

	// The job file: the ConfigMap's key that --config names through the
	// volume mounted there. It must load as a job file.
	cfgArg := c.Args[slices.Index(c.Args, "--config")+1]
	dir, key := path.Split(cfgArg)
	vol := mounts[strings.TrimSuffix(dir, "/")]
	var fromMap string
	for _, v := range pod.Volumes {
		if v.Name == vol && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			fromMap = cm.Data[key]
		}
	}
	if fromMap == "" {
		t.Fatalf("--config %s is not a key of ConfigMap %s mounted there", cfgArg, cm.Name)
	}
	mountDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(mountDir, key), []byte(fromMap), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.LoadFile(filepath.Join(mountDir, key)); err != nil {
		t.Fatalf("the ConfigMap's job file: %v", err)
	}
	args := slices.Clone(c.Args)
	args[slices.Index(args, cfgArg)] = filepath.Join(mountDir, key)

	// As the Job controller runs it: one pod per completion index.
	e := newEngine(t)
	e.run(t, args, manifestEnv, int(*job.Completions), n, func(i int) []string { return []string{"JOB_COMPLETION_INDEX=" + strconv.Itoa(i)} })
}

// checkMemLimit checks that env sets GOMEMLIMIT a little under the
// container's memory limit (a Kubernetes quantity): near the limit the
// collector then runs more often rather than the container being killed,
// and what is not Go heap (stacks, the binary's pages) still fits.
func checkMemLimit(t *testing.T, env []string, limit string) {
	t.Helper()
	q, err := resource.ParseQuantity(limit)
	if err != nil || q.Value() <= 0 {
		t.Errorf("memory limit %q: want one (%v)", limit, err)
		return
	}
	var set string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOMEMLIMIT="); ok {
			set = v
		}
	}
	m := regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`).FindStringSubmatch(set)
	if m == nil {
		t.Errorf("GOMEMLIMIT %q: want it set, as the Go runtime reads it (bytes, or KiB, MiB, GiB, TiB)", set)
		return
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	n <<= map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	if share := float64(n) / float64(q.Value()); share < 0.75 || share > 0.95 {
		t.Errorf("GOMEMLIMIT %s is %.0f%% of the memory limit %s: want 75-95%%", set, 100*share, limit)
	}
}

// TestDeployCloudRun: deploy/cloudrun.yaml is a Cloud Run Job (the v1 API
// that `gcloud run jobs replace` takes) with taskCount = parallelism =
// --shards, retries and a task timeout, and a service account; its tasks,
// run as Cloud Run would (CLOUD_RUN_TASK_INDEX 0..n-1 and
// CLOUD_RUN_TASK_COUNT, at once), deliver the job exactly once.
func TestDeployCloudRun(t *testing.T) {
	docs := yamlDocs(t, "cloudrun.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents, want one Job", len(docs))
	}
	var job run1.Job
	if err := decodeStrict(docs[0], &job); err != nil {
		t.Fatalf("cloudrun.yaml: %v", err)
	}
	if job.ApiVersion != "run.googleapis.com/v1" || job.Kind != "Job" || job.Metadata == nil || job.Metadata.Name == "" {
		t.Fatalf("apiVersion %q kind %q: want a named run.googleapis.com/v1 Job", job.ApiVersion, job.Kind)
	}
	if job.Spec == nil || job.Spec.Template == nil || job.Spec.Template.Spec == nil || job.Spec.Template.Spec.Template == nil || job.Spec.Template.Spec.Template.Spec == nil {
		t.Fatal("no spec.template.spec.template.spec")
	}
	ex := job.Spec.Template.Spec
	task := ex.Template.Spec
	if len(task.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(task.Containers))
	}
	c := task.Containers[0]
	n := shardsArg(t, c.Args)
	if int(ex.TaskCount) != n || int(ex.Parallelism) != n {
		t.Errorf("taskCount %d, parallelism %d, --shards %d: want all equal", ex.TaskCount, ex.Parallelism, n)
	}
	if task.MaxRetries < 1 || task.TimeoutSeconds < 3600 || task.ServiceAccountName == "" {
		t.Errorf("maxRetries %d, timeoutSeconds %d, service account %q: want retries, hours, a service account",
			task.MaxRetries, task.TimeoutSeconds, task.ServiceAccountName)
	}
	var env []string
	for _, v := range c.Env {
		if slices.Contains(engineVars, v.Name) {
			t.Errorf("env sets %s, which Cloud Run sets for each task", v.Name)
		}
		env = append(env, v.Name+"="+v.Value)
	}
	if c.Resources == nil {
		t.Fatal("no resources: want a memory limit")
	}
	checkMemLimit(t, env, c.Resources.Limits["memory"])
	// As Cloud Run runs it: taskCount tasks, each told its index and the count.
	tasks := int(ex.TaskCount)
	e := newEngine(t)
	e.run(t, c.Args, env, tasks, n, func(i int) []string {
		return []string{"CLOUD_RUN_TASK_INDEX=" + strconv.Itoa(i), "CLOUD_RUN_TASK_COUNT=" + strconv.Itoa(tasks), "CLOUD_RUN_TASK_ATTEMPT=0"}
	})
}

// engine stands in for Kubernetes or Cloud Run: a local export of one day,
// a state and a recording simulator that the settings which name cloud
// locations are pointed at, as CONVERTRO_ETL_* variables (which win over
// the job file; the manifests' own args must not set them).
type engine struct {
	export, state, day string
	sim                *simulator.Simulator
	record             *syncBuffer
	endpoint           string
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	dir := t.TempDir()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	e := &engine{export: filepath.Join(dir, "export"), state: filepath.Join(dir, "state"), day: day.Format(time.DateOnly), record: &syncBuffer{}}
	if _, err := generate.Generate(context.Background(), generate.Options{Out: e.export, Rows: 600, Seed: 9, Start: day, Days: 1, RowGroupRows: 40}); err != nil {
		t.Fatal(err)
	}
	e.sim = simulator.New(simulator.Options{Record: e.record})
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	e.endpoint = srv.URL
	return e
}

// environ is this process's environment without any variable of the
// program or the engines, then the manifest's, then the test's.
func (e *engine) environ(manifest []string, state string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, jobs.EnvName("")) && !slices.Contains(engineVars, name) {
			env = append(env, kv)
		}
	}
	env = append(env, manifest...)
	return append(env, "CONVERTRO_ETL_MAIN=1",
		jobs.EnvName("source")+"="+e.export, jobs.EnvName("state")+"="+state,
		jobs.EnvName("endpoint")+"="+e.endpoint, jobs.EnvName("from")+"="+e.day, jobs.EnvName("to")+"="+e.day)
}

// run runs the container's args as procs processes at once, process i
// with index(i) in its environment, and checks each finished (exit 0), that
// the simulator received exactly the requests a single-process dry run of
// the same settings lists, each once, and that `status --done` then says
// the job of n shards is done, its merged report over all of them.
func (e *engine) run(t *testing.T, args, manifestEnv []string, procs, n int, index func(int) []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// What the job sends, from one process without shards.
	dryArgs := slices.Clone(args)
	i := slices.Index(dryArgs, "--shards")
	if i < 0 || i+1 >= len(dryArgs) {
		t.Fatalf("args %q: want --shards N as two arguments", args)
	}
	dryArgs = slices.Delete(dryArgs, i, i+2)
	out := filepath.Join(t.TempDir(), "dry.jsonl")
	dry := exec.CommandContext(ctx, os.Args[0], append(dryArgs, "--dry-run", "--out", out)...)
	dry.Env = e.environ(manifestEnv, filepath.Join(t.TempDir(), "dry-state"))
	if b, err := dry.CombinedOutput(); err != nil {
		t.Fatalf("dry run %q: %v\n%s", dryArgs, err, b)
	}
	want := dryRunRequests(t, out)
	if len(want) == 0 {
		t.Fatal("the dry run lists no request: the test would prove nothing")
	}

	type result struct {
		i      int
		err    error
		output []byte
	}
	results := make(chan result, procs)
	for i := range procs {
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Env = append(e.environ(manifestEnv, e.state), index(i)...)
		go func() {
			b, err := cmd.CombinedOutput()
			results <- result{i, err, b}
		}()
	}
	for range procs {
		r := <-results
		if r.err != nil {
			t.Errorf("shard %d: %v\n%s", r.i, r.err, lastLines(r.output, 5))
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	if err := e.sim.Flush(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, l := range e.record.lines() {
		var rec struct {
			Path  string            `json:"path"`
			Query map[string]string `json:"query"`
		}
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatalf("record line %q: %v", l, err)
		}
		q := url.Values{}
		for k, v := range rec.Query {
			q.Set(k, v)
		}
		got[canonical(rec.Path, q)]++
	}
	for r, k := range want {
		if got[r] != k {
			t.Errorf("request %s: received %d times, want %d", r, got[r], k)
		}
	}
	for r := range got {
		if want[r] == 0 {
			t.Errorf("request %s: received, but the dry run does not list it", r)
		}
	}

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"status", "--state", e.state, "--done", "--report"}, &stdout, &stderr); code != 0 {
		t.Fatalf("status --done after every shard: exit %d\n%s", code, stderr.String())
	}
	var rep jobs.JobReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	var sent int
	for _, k := range want {
		sent += k
	}
	if rep.ShardCount != n || len(rep.Shards) != n || rep.Counts.RequestsAcked != int64(sent) {
		t.Errorf("merged report: %d of %d shards, %d requests acked; want %d shards, %d requests", len(rep.Shards), rep.ShardCount, rep.Counts.RequestsAcked, n, sent)
	}
}

// dryRunRequests reads a dry run's lines as canonical requests, counted.
func dryRunRequests(t *testing.T, file string) map[string]int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("dry-run line %q: %v", sc.Text(), err)
		}
		u, err := url.Parse(line.URL)
		if err != nil {
			t.Fatal(err)
		}
		out[canonical(u.Path, u.Query())]++
	}
	return out
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// dockerfile is deploy/Dockerfile as stages of instructions.
type dockerStage struct {
	from, name string
	instr      [][2]string // keyword (upper case), arguments
}

func readDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{} // global ARGs, for FROM
	var stages []dockerStage
	var line string
	for _, l := range strings.Split(string(data), "\n") {
		if s := strings.TrimSpace(l); s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			line += s
			continue
		}
		line += l
		kw, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		kw, rest, line = strings.ToUpper(kw), strings.TrimSpace(rest), ""
		switch {
		case kw == "FROM":
			f := strings.Fields(os.Expand(rest, func(k string) string { return args[k] }))
			s := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case kw == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(rest, "=")
			args[k] = v
		case len(stages) == 0:
			t.Fatalf("Dockerfile: %s before FROM", kw)
		default:
			s := &stages[len(stages)-1]
			s.instr = append(s.instr, [2]string{kw, rest})
		}
	}
	return stages
}

// dockerfileUser is the numeric uid the final stage runs as.
func dockerfileUser(t *testing.T) int64 {
	t.Helper()
	stages := readDockerfile(t)
	for _, in := range stages[len(stages)-1].instr {
		if in[0] == "USER" {
			uid, _, _ := strings.Cut(in[1], ":")
			n, err := strconv.ParseInt(uid, 10, 64)
			if err != nil {
				t.Fatalf("USER %s: want a numeric uid (scratch has no /etc/passwd)", in[1])
			}
			return n
		}
	}
	t.Fatal("the final stage has no USER: it would run as root")
	return 0
}

// TestDeployDockerfile: deploy/Dockerfile builds a static binary in a Go
// stage at least as new as go.mod asks, and ships it alone on an empty
// base: CA certificates copied from the builder, a /tmp, a numeric non-root
// user, an exec-form entrypoint, and no instruction that needs a shell. The
// context's ignore file keeps what the build reads.
func TestDeployDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and the image", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(gomod)
	have := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(build.from)
	if want == nil || have == nil {
		t.Fatalf("build stage FROM %s, go.mod's go line: want golang:MAJOR.MINOR and go MAJOR.MINOR", build.from)
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if atoi(have[1]) < atoi(string(want[1])) || atoi(have[1]) == atoi(string(want[1])) && atoi(have[2]) < atoi(string(want[2])) {
		t.Errorf("build stage %s is older than go.mod's go %s.%s", build.from, want[1], want[2])
	}
	var built string
	for _, in := range build.instr {
		if in[0] == "RUN" && strings.Contains(in[1], "go build") {
			if !strings.Contains(in[1], "CGO_ENABLED=0") || !strings.Contains(in[1], "./cmd/convertro-etl") {
				t.Errorf("RUN %s: want CGO_ENABLED=0 go build of ./cmd/convertro-etl", in[1])
			}
			if m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(in[1]); m != nil {
				built = m[1]
			}
		}
	}
	if built == "" {
		t.Fatal("the build stage has no go build -o")
	}

	if final.from != "scratch" && !strings.HasPrefix(final.from, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s: want scratch or distroless static", final.from)
	}
	copied := map[string]string{} // destination: source, from the build stage
	var entry, cmdForm []string
	for _, in := range final.instr {
		switch in[0] {
		case "RUN", "SHELL":
			t.Errorf("final stage %s %s: the image has no shell", in[0], in[1])
		case "COPY":
			f := strings.Fields(in[1])
			if len(f) == 3 && f[0] == "--from="+build.name {
				copied[f[2]] = f[1]
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in[1]), &entry); err != nil {
				t.Errorf("ENTRYPOINT %s: want the exec form (no shell)", in[1])
			}
		case "CMD":
			if err := json.Unmarshal([]byte(in[1]), &cmdForm); err != nil {
				t.Errorf("CMD %s: want the exec form (no shell)", in[1])
			}
		}
	}
	if copied["/etc/ssl/certs/ca-certificates.crt"] != "/etc/ssl/certs/ca-certificates.crt" {
		t.Errorf("no CA certificates copied from the build stage to /etc/ssl/certs/ca-certificates.crt: %v", copied)
	}
	// COPY sets the modes of what is inside the directory it copies, not of
	// the directory itself: /tmp must arrive inside a copied root, made
	// 1777 in the build stage, or the image's user cannot write to it.
	if src, ok := copied["/tmp"]; ok {
		t.Errorf("COPY %s /tmp: the directory arrives as 0755, root's; stage it as tmp inside a root copied to /", src)
	}
	root := strings.TrimSuffix(copied["/"], "/")
	madeTmp := false
	for _, in := range build.instr {
		madeTmp = madeTmp || in[0] == "RUN" && root != "" && strings.Contains(in[1], "mkdir -m 1777 "+root+"/tmp")
	}
	if !madeTmp {
		t.Errorf("no /tmp of mode 1777: want the build stage to make <root>/tmp with mkdir -m 1777 and COPY <root>/ / (copied: %v)", copied)
	}
	if len(entry) != 1 || copied[entry[0]] != built {
		t.Errorf("ENTRYPOINT %q: want the binary built at %s, copied there", entry, built)
	}
	if uid := dockerfileUser(t); uid == 0 {
		t.Error("USER 0: want a non-root user")
	}

	ignore, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Split(string(ignore), "\n") {
		p = strings.TrimPrefix(strings.TrimSpace(p), "/")
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd", "cmd/convertro-etl", "jobs", "jobs/sample"} {
			if ok, _ := filepath.Match(p, need); ok {
				t.Errorf("Dockerfile.dockerignore's %q leaves %s out of the build", p, need)
			}
		}
	}
}
