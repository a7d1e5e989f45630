package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The emulators are processes, started once per test binary on first use
// and stopped by Main: the real servers the cloud SDKs talk to, not fakes
// inside the test. `make emulators` installs them under .emulators/ in the
// module root; CONVERTRO_ETL_EMULATORS names another folder. A test that
// needs one that is missing fails with what to run: it is never skipped.

// EmulatorsEnv names the folder the emulators are installed in.
const EmulatorsEnv = "CONVERTRO_ETL_EMULATORS"

// Main runs the tests of a package that uses the emulators and stops them
// afterwards; call it from TestMain.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	stopAll()
	return code
}

// emulator is one started server process.
type emulator struct {
	cmd  *exec.Cmd
	addr string // host:port
	dir  string // its working folder, removed when it stops
	log  *bytes.Buffer
	err  error
}

var (
	emuMu   sync.Mutex
	started = map[string]*emulator{}
)

func stopAll() {
	emuMu.Lock()
	defer emuMu.Unlock()
	for name, e := range started {
		if e.cmd != nil && e.cmd.Process != nil {
			_ = e.cmd.Process.Kill()
			_ = e.cmd.Wait()
		}
		if e.dir != "" {
			_ = os.RemoveAll(e.dir)
		}
		delete(started, name)
	}
}

// emulatorsDir finds the install folder: $CONVERTRO_ETL_EMULATORS, or
// .emulators in the module root above the working directory.
func emulatorsDir() (string, error) {
	if d := os.Getenv(EmulatorsEnv); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".emulators"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory; set %s", EmulatorsEnv)
		}
		dir = parent
	}
}

// Binary is the path of an installed emulator program, relative to the
// install folder; a missing one fails t with what to run.
func Binary(t testing.TB, rel string) string {
	t.Helper()
	dir, err := emulatorsDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("emulator %s is not installed (%v): run `make emulators` (or set %s)", rel, err, EmulatorsEnv)
	}
	return p
}

// start starts the emulator name once per process: args get the port to
// listen on, ready is polled until it answers.
func start(t testing.TB, name, bin string, args func(port string, dir string) []string, ready func(addr string) bool, env ...string) *emulator {
	t.Helper()
	emuMu.Lock()
	defer emuMu.Unlock()
	if e, ok := started[name]; ok {
		if e.err != nil {
			t.Fatalf("emulator %s: %v", name, e.err)
		}
		return e
	}
	e := &emulator{log: new(bytes.Buffer)}
	started[name] = e
	port, err := freePort()
	if err != nil {
		e.err = err
		t.Fatalf("emulator %s: %v", name, err)
	}
	dir, err := os.MkdirTemp("", "convertro-etl-"+name+"-")
	if err != nil {
		e.err = err
		t.Fatalf("emulator %s: %v", name, err)
	}
	e.dir = dir
	e.addr = net.JoinHostPort("127.0.0.1", port)
	e.cmd = exec.Command(bin, args(port, dir)...)
	e.cmd.Dir = dir
	e.cmd.Env = append(os.Environ(), env...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		e.err = err
		t.Fatalf("emulator %s: %v", name, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !ready(e.addr) {
		if time.Now().After(deadline) {
			_ = e.cmd.Process.Kill()
			e.err = fmt.Errorf("not ready on %s after 60 s; its output:\n%s", e.addr, e.log)
			t.Fatalf("emulator %s: %v", name, e.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// httpReady reports whether GET url answers at all.
func httpReady(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// uniqueName is a fresh lower-case bucket or container name.
func uniqueName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// GCS starts fake-gcs-server (once), points this process's GCS client at it
// through STORAGE_EMULATOR_HOST, creates a new bucket and returns its URI,
// gs://<bucket>. Child processes that inherit the environment use it too.
func GCS(t testing.TB) string {
	t.Helper()
	bin := Binary(t, "bin/fake-gcs-server")
	e := start(t, "gcs", bin, func(port, dir string) []string {
		return []string{"-scheme", "http", "-host", "127.0.0.1", "-port", port, "-backend", "memory", "-log-level", "error"}
	}, func(addr string) bool { return httpReady("http://" + addr + "/storage/v1/b") })
	if err := os.Setenv("STORAGE_EMULATOR_HOST", e.addr); err != nil {
		t.Fatal(err)
	}
	bucket := uniqueName("b")
	body := strings.NewReader(`{"name":"` + bucket + `"}`)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+e.addr+"/storage/v1/b", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create bucket %s: %s", bucket, resp.Status)
	}
	return "gs://" + bucket
}
