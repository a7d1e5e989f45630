package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/spf13/pflag"

	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// TestMain lets the test binary stand in for the built command: with
// CONVERTRO_ETL_MAIN=1 it runs main, so tests start the real program as a
// subprocess (and kill it) without a second build.
func TestMain(m *testing.M) {
	if os.Getenv("CONVERTRO_ETL_MAIN") == "1" {
		main()
		return
	}
	os.Exit(objstoretest.Main(m))
}

func TestExitCodes(t *testing.T) {
	held := &pipeline.LeaseError{Op: "open manifest", URI: "x", Err: pipeline.ErrLeaseHeld}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"dead letters", fmt.Errorf("run shard 0/1: %w", pipeline.ErrIncomplete), 2},
		{"lease held", held, 3},
		{"daily cap reached", fmt.Errorf("run shard 0/1: %w", pipeline.ErrCapReached), 3},
		{"stopped by a signal", fmt.Errorf("run: %w", pipeline.ErrStopped), 1},
		{"misconfigured", pipeline.ErrMisconfigured, 1},
		{"bad config", jobs.ErrConfig, 1},
		{"anything else", errors.New("boom"), 1},
		{"status --done: shards not finished", fmt.Errorf("status s: %w", jobs.ErrNotDone), 4},
		{"status --done: a shard failed", fmt.Errorf("status s: %w", jobs.ErrShardFailed), 5},
		{"status --done: finished with dead letters", fmt.Errorf("status s: %w", pipeline.ErrIncomplete), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestRunCommandLine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		args       []string
		want       int
		wantStderr string
	}{
		{"unknown command", []string{"frobnicate"}, 1, "unknown command"},
		{"unknown flag", []string{"run", "--nope"}, 1, "unknown flag"},
		{"run without a source", []string{"run", "--account", "a"}, 1, "no source"},
		{"missing source", []string{"run", "--source", filepath.Join(dir, "nothing"), "--account", "a", "--client-name", "c", "--site-id", "1"}, 1, "nothing"},
		{"delivery without client name", []string{"run", "--source", dir, "--account", "a", "--site-id", "1"}, 1, "clientName"},
		{"bad on-bad-file", []string{"run", "--source", dir, "--on-bad-file", "maybe"}, 1, "--on-bad-file"},
		{"dry run without out", []string{"run", "--source", dir, "--dry-run"}, 1, "--out"},
		{"bad date", []string{"plan", "--source", dir, "--from", "last tuesday"}, 1, "--from"},
		{"bad event", []string{"run", "--source", dir, "--event", "no equals sign"}, 1, "--event"},
		{"status of nothing", []string{"status", "--state", filepath.Join(dir, "state")}, 1, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := run(context.Background(), tt.args, &stdout, &stderr)
			if got != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, stderr.String())
			}
		})
	}
}

func TestJobFileUnderFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yaml")
	os.WriteFile(file, []byte(`
sources: [gs://b/from-file]
account: file-account
clientName: file-client
siteId: "7"
events:
  Signed Up: signup
  Added to Cart: [add_to_cart, cart]
concurrency: 32
onBadFile: skip
`), 0o644)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	f := bindJobFlags(fs, jobs.CmdRun, noEnv)
	if err := fs.Parse([]string{"--config", file, "--client-name", "flag-client", "--event", "Signed Up=register"}); err != nil {
		t.Fatal(err)
	}
	o, _, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	if o.ClientName != "flag-client" || o.Account != "file-account" || o.SiteID != "7" || o.Concurrency != 32 || o.OnBadFile != "skip" {
		t.Errorf("merged options = %+v", o)
	}
	// --event replaces the file's events map whole: no merge.
	if want := map[string]jobs.EventNames{"Signed Up": {"register"}}; !reflect.DeepEqual(o.Events, want) {
		t.Errorf("events = %v, want %v", o.Events, want)
	}
	if len(o.Sources) != 1 || o.Sources[0] != "gs://b/from-file" {
		t.Errorf("sources %v", o.Sources)
	}

	os.WriteFile(file, []byte("sources: [x]\nclient_name: typo\n"), 0o644)
	if _, err := jobs.LoadFile(file); !errors.Is(err, jobs.ErrConfig) {
		t.Errorf("unknown key: err = %v, want ErrConfig", err)
	}
}

// A crash, a panic in a goroutine or a fatal runtime error, never exits
// with a status the exit codes give a meaning to (0, 2, 3): Go's own exit
// status for them is 2. The process dies of SIGABRT instead.
func TestCrashIsASignalNotAnExitCode(t *testing.T) {
	for _, how := range []string{"panic", "fatal"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "version")
			cmd.Env = append(os.Environ(), "CONVERTRO_ETL_MAIN=1", crashEnv+"="+how)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want the process to die; stderr:\n%s", err, stderr.String())
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
				t.Fatalf("exit status %v (code %d), want death by SIGABRT; stderr:\n%s", ws, ee.ExitCode(), stderr.String())
			}
			if want := map[string]string{"panic": "panic: crash requested", "fatal": "fatal error: sync: unlock of unlocked mutex"}[how]; !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
			}
		})
	}
}

// syncBuffer is the simulator's record, read by the test while it serves.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n"))
}

func (b *syncBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// canonical is a request as path and sorted query, whatever order its
// parameters came in.
func canonical(path string, q url.Values) string { return path + "?" + q.Encode() }
