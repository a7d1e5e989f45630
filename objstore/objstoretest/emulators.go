package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// emulator is one started server process, reached through a proxy that
// counts what it serves (see Traffic).
type emulator struct {
	cmd     *exec.Cmd
	addr    string // the proxy's host:port: what clients are given
	direct  string // the process's own host:port
	dir     string // its working folder, removed when it stops
	log     *bytes.Buffer
	err     error
	traffic *Traffic
	proxy   *http.Server
}

// Traffic is what an emulator served through its proxy since the last
// Reset: every request of every client in this process, and of the child
// processes it started. Delay, when set, is added before each request is
// passed on: the time to first byte of a real remote store.
type Traffic struct {
	Requests atomic.Int64
	Bytes    atomic.Int64 // response bodies
	Delay    atomic.Int64 // nanoseconds added to each request
	// Before, when set, is called with each request before it is passed
	// on, after Delay: a test holds a chosen read back with it.
	Before atomic.Pointer[func(*http.Request)]
}

// Reset zeroes the counts.
func (t *Traffic) Reset() { t.Requests.Store(0); t.Bytes.Store(0) }

// TrafficOf is the Traffic of the emulator started for name ("gcs", "s3",
// "azure"); nil when it is not started.
func TrafficOf(name string) *Traffic {
	emuMu.Lock()
	defer emuMu.Unlock()
	if e, ok := started[name]; ok {
		return e.traffic
	}
	return nil
}

// EmulatorCPU is the processor time the emulator started for name has used
// so far, and whether it is known: it is on Linux, for a started emulator.
// Read before and after some work, it shows what serving that work cost the
// machine the client runs on, which a benchmark of the client against an
// emulator on the same processors must be read with.
func EmulatorCPU(name string) (time.Duration, bool) {
	emuMu.Lock()
	e, ok := started[name]
	emuMu.Unlock()
	if !ok || e.cmd == nil || e.cmd.Process == nil {
		return 0, false
	}
	return processCPU(e.cmd.Process.Pid)
}

// SelfCPU is the processor time this process has used so far (its client
// work and the emulators' proxies), and whether it is known (on Linux).
func SelfCPU() (time.Duration, bool) { return processCPU(os.Getpid()) }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// serveProxy passes every request to the process at direct, counting it.
// The Host header is kept as the client sent it: request signatures (S3's)
// cover it.
func (e *emulator) serveProxy() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	target := &url.URL{Scheme: "http", Host: e.direct}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = countingBody{resp.Body, &e.traffic.Bytes}
			return nil
		},
		FlushInterval: -1,
		// Keep as many connections to the emulator as clients keep to
		// the proxy (the cloud SDKs keep 100 a host): the default 2 would
		// open a connection for most of the concurrent reads, a cost no
		// real store puts on its clients.
		Transport: proxyTransport,
	}
	e.traffic = new(Traffic)
	e.proxy = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.traffic.Requests.Add(1)
		if d := time.Duration(e.traffic.Delay.Load()); d > 0 {
			time.Sleep(d)
		}
		if f := e.traffic.Before.Load(); f != nil {
			(*f)(r)
		}
		rp.ServeHTTP(w, r)
	})}
	e.addr = l.Addr().String()
	go e.proxy.Serve(l)
	return nil
}

var proxyTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 512, 256
	return t
}()

var (
	emuMu   sync.Mutex
	started = map[string]*emulator{}
)

func stopAll() {
	emuMu.Lock()
	defer emuMu.Unlock()
	for name, e := range started {
		if e.proxy != nil {
			_ = e.proxy.Close()
		}
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
	e.direct = net.JoinHostPort("127.0.0.1", port)
	e.cmd = exec.Command(bin, args(port, dir)...)
	e.cmd.Dir = dir
	e.cmd.Env = append(os.Environ(), env...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		e.err = err
		t.Fatalf("emulator %s: %v", name, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !ready(e.direct) {
		if time.Now().After(deadline) {
			_ = e.cmd.Process.Kill()
			e.err = fmt.Errorf("not ready on %s after 60 s; its output:\n%s", e.direct, e.log)
			t.Fatalf("emulator %s: %v", name, e.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.serveProxy(); err != nil {
		_ = e.cmd.Process.Kill()
		e.err = err
		t.Fatalf("emulator %s: %v", name, err)
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
