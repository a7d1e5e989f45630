package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// faultProxy stands between the client and a fake-gcs-server and spoils the
// next uploads as told: "reject" answers without passing the upload on (the
// write did not happen), "lose" passes it on and then answers 503 (the write
// landed, its answer was lost).
type faultProxy struct {
	mu      sync.Mutex
	faults  []fault
	spoiled int // uploads spoiled so far
}

type fault struct {
	mode string // "reject" or "lose"
	code int    // the status answered
}

func (p *faultProxy) spoil(f ...fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f...)
}

func (p *faultProxy) next() (fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.faults) == 0 {
		return fault{}, false
	}
	f := p.faults[0]
	p.faults = p.faults[1:]
	p.spoiled++
	return f, true
}

func (p *faultProxy) left() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.faults)
}

// newFaultyGCSState serves a fake-gcs-server through a faultProxy and opens
// the state with a client made as the process's is (bounded retries, JSON
// reads), pointed at the proxy.
func newFaultyGCSState(t *testing.T) (StateStore, *faultProxy) {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	bucket := "faulty-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	h := srv.HTTPHandler()
	p := &faultProxy{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/") {
			if f, ok := p.next(); ok {
				if f.mode == "lose" {
					h.ServeHTTP(httptest.NewRecorder(), r)
				}
				http.Error(w, fmt.Sprintf(`{"error":{"code":%d,"message":"spoiled"}}`, f.code), f.code)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	c, err := objstore.NewGCSClient(context.Background(), option.WithEndpoint(ts.URL+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(objstore.RouteGCSBucket(bucket, c))
	st, err := OpenState(context.Background(), "gs://"+bucket+"/jobs/nightly")
	if err != nil {
		t.Fatal(err)
	}
	return st, p
}

// A manifest write that meets 503 or 429 answers, or whose answer is lost,
// is retried and the run goes on; a write that is really stale still loses
// the lease, transient errors or not.
func TestStateGCSWriteRetriesTransient(t *testing.T) {
	ctx := context.Background()
	st, proxy := newFaultyGCSState(t)
	clk := newTestClock()
	c, _, err := OpenCheckpoint(ctx, st, shard01, NewLease(), clk.now, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	proxy.spoil(fault{"reject", http.StatusServiceUnavailable}, fault{"reject", http.StatusTooManyRequests})
	if err := c.Begin(ctx, &Manifest{Units: []UnitProgress{{Rows: 3}}}); err != nil {
		t.Fatalf("Begin after a 503 and a 429: %v", err)
	}
	clk.advance(time.Second)
	proxy.spoil(fault{"reject", http.StatusBadGateway})
	if err := c.Commit(ctx); err != nil {
		t.Fatalf("Commit after a 502: %v", err)
	}
	clk.advance(time.Second)
	proxy.spoil(fault{"lose", http.StatusServiceUnavailable})
	if err := c.Commit(ctx); err != nil {
		t.Fatalf("Commit whose write landed but answered 503: %v", err)
	}
	clk.advance(time.Second)
	if err := c.Commit(ctx); err != nil {
		t.Fatalf("Commit after the adopted generation: %v", err)
	}
	if proxy.left() != 0 || proxy.spoiled != 4 {
		t.Fatalf("%d faults left, %d spoiled; the writes did not meet them", proxy.left(), proxy.spoiled)
	}
	m := readManifestFrom(t, st)
	if m.Lease.Owner != c.Owner().Owner || m.Runs != 1 {
		t.Errorf("manifest owner %s runs %d", m.Lease.Owner, m.Runs)
	}

	// Another writer replaces the manifest: the next commit, which meets a
	// 503 first, still finds its precondition failed and loses the lease.
	data, gen, err := st.Read(ctx, ManifestName(shard01))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(ctx, ManifestName(shard01), append(data, ' '), objstore.IfVersion(gen)); err != nil {
		t.Fatal(err)
	}
	proxy.spoil(fault{"reject", http.StatusServiceUnavailable})
	clk.advance(time.Second)
	if err := c.Commit(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale Commit after a 503: %v, want ErrLeaseLost", err)
	}
}

func readManifestFrom(t *testing.T, st StateStore) *Manifest {
	t.Helper()
	data, _, err := st.Read(context.Background(), ManifestName(shard01))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// A write that is refused for good (403) is not retried.
func TestStateGCSWriteNotRetriedWhenPermanent(t *testing.T) {
	st, proxy := newFaultyGCSState(t)
	proxy.spoil(fault{"reject", http.StatusForbidden}, fault{"reject", http.StatusForbidden})
	if _, err := st.Write(context.Background(), "report-0-of-1.json", []byte("{}"), objstore.Overwrite); err == nil {
		t.Fatal("write answered 403 succeeded")
	}
	if proxy.left() != 1 {
		t.Errorf("%d faults left, want 1: a 403 was retried", proxy.left())
	}
}

// A kill during the report write leaves the old report or none, never a
// part of one, and then a run of the finished job writes the missing
// report instead of leaving none for good.
func TestRunWritesMissingReport(t *testing.T) {
	stub := newConvertroStub(t, nil)
	dir := t.TempDir()
	cfg := Config{Objects: testObjects(), Decoders: 2, Concurrency: 4, Window: 64}
	if _, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 7}, stub, &memDeadLetters{}); err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatal(err)
	}
	report := filepath.Join(dir, ReportName(Shard{0, 1}))
	// The kill: the report never got renamed into place; its temporary file
	// is left, an hour old.
	if err := os.Remove(report); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+ReportName(Shard{0, 1})+".42.convertro-etl.tmp")
	if err := os.WriteFile(tmp, []byte(`{"job":`), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour) // older than any write takes
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	stub.reset()
	if _, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 7}, stub, &memDeadLetters{}); err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatal(err)
	}
	if n := len(stub.received()); n != 0 {
		t.Errorf("the finished job sent %d requests again", n)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report after the rerun: %v", err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil || rep.Status != StatusFinished || rep.Counts.RowsRead == 0 {
		t.Errorf("report %s: %v, status %q, %d rows read", data, err, rep.Status, rep.Counts.RowsRead)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan temporary report file still there: %v", err)
	}
}
