package localfile

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// holderEnv, set, makes the test binary a process that holds a scratch
// folder until it is killed (holdScratch).
const holderEnv = "CONVERTRO_ETL_SCRATCH_HOLDER"

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		s, _, err := NewScratch("audience")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.WriteFile(filepath.Join(s.Dir, "spill-0"), []byte("records"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(s.Dir)
		time.Sleep(time.Hour) // until killed
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// holdScratch starts a process that makes a scratch folder in tmp and holds
// it, and returns the folder and a kill that ends the process as a kill -9
// would.
func holdScratch(t *testing.T, tmp string) (dir string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"=1", "TMPDIR="+tmp, "TMP="+tmp, "TEMP="+tmp)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill = func() {
		if !killed {
			killed = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("scratch holder: %v", err)
	}
	return strings.TrimSpace(line), kill
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestScratchSweepsOnlyEndedRuns: a sweep removes the scratch folders of
// killed processes, with what they held, and of a process killed before it
// made its lock file; it leaves the folder of a live process, folders
// younger than the grace, and folders not named as ours.
func TestScratchSweepsOnlyEndedRuns(t *testing.T) {
	tmp := t.TempDir()
	killed, kill := holdScratch(t, tmp)
	live, killLive := holdScratch(t, tmp)
	kill()
	lockless := filepath.Join(tmp, scratchPrefix+"audience-1")
	notOurs := filepath.Join(tmp, "convertro-audience-1")
	for _, dir := range []string{lockless, notOurs} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(notOurs, scratchLock), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{killed, live} {
		if filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), scratchPrefix+"audience-") || !exists(t, filepath.Join(dir, "spill-0")) {
			t.Fatalf("holder's scratch folder %s: not a scratch folder in %s holding its file", dir, tmp)
		}
	}

	if got := sweep(tmp, time.Now()); len(got) != 0 {
		t.Errorf("sweep within the grace removed %q", got)
	}
	later := time.Now().Add(2 * scratchGrace)
	got := sweep(tmp, later)
	slices.Sort(got)
	want := []string{killed, lockless}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("swept %q, want the killed process's and the lockless folder %q", got, want)
	}
	for _, dir := range want {
		if exists(t, dir) {
			t.Errorf("%s is still there", dir)
		}
	}
	if !exists(t, filepath.Join(live, "spill-0")) {
		t.Errorf("the live process's folder lost its file")
	}
	if !exists(t, notOurs) {
		t.Errorf("a folder not named as ours was removed")
	}

	killLive()
	if got := sweep(tmp, later); !slices.Equal(got, []string{live}) || exists(t, live) {
		t.Errorf("after its process was killed, swept %q, want %q", got, live)
	}
}

// TestScratchHeldAndReleased: a folder this process holds is not swept, and
// Release removes it with its files.
func TestScratchHeldAndReleased(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("TMP", tmp)
	t.Setenv("TEMP", tmp)
	s, _, err := NewScratch("demo")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(s.Dir) != tmp || !strings.HasPrefix(filepath.Base(s.Dir), scratchPrefix+"demo-") {
		t.Fatalf("scratch folder %s, want one named %s in %s", s.Dir, scratchPrefix+"demo-", tmp)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "export"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := sweep(tmp, time.Now().Add(2*scratchGrace)); len(got) != 0 {
		t.Errorf("swept %q, held by this process", got)
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	if exists(t, s.Dir) {
		t.Errorf("%s is still there after Release", s.Dir)
	}
}
