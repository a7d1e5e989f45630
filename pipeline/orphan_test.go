package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// failingState fails every manifest write once armed: what a kill between
// storing a dead-letter part and the commit that lists it leaves behind.
type failingState struct {
	StateStore
	armed atomic.Bool
}

var errInjected = errors.New("injected: the process died here")

func (f *failingState) Write(ctx context.Context, name string, data []byte, pre objstore.Precondition) (string, error) {
	if f.armed.Load() && strings.HasPrefix(name, "manifest-") {
		return "", errInjected
	}
	return f.StateStore.Write(ctx, name, data, pre)
}

// stateDeadLetters stores each flush as a part in the state, as the sink in
// jobs does; with arm set, storing a part arms it (the next commit fails).
type stateDeadLetters struct {
	st      StateStore
	arm     *failingState
	run     string
	parts   int
	pending []DeadLetter
}

func (s *stateDeadLetters) WriteDeadLetter(d DeadLetter) error {
	s.pending = append(s.pending, d)
	return nil
}

func (s *stateDeadLetters) Flush(ctx context.Context) (string, error) {
	if len(s.pending) == 0 {
		return "", nil
	}
	s.parts++
	name := fmt.Sprintf("dead-letters/0-of-1/%s-%05d.json", s.run, s.parts)
	data, _ := json.Marshal(s.pending)
	if _, err := s.st.Write(ctx, name, data, objstore.IfAbsent); err != nil {
		return "", err
	}
	s.pending = nil
	if s.arm != nil {
		s.arm.armed.Store(true)
	}
	return name, nil
}

func readPart(t *testing.T, st StateStore, name string) []DeadLetter {
	t.Helper()
	data, _, err := st.Read(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var dls []DeadLetter
	if err := json.Unmarshal(data, &dls); err != nil {
		t.Fatal(err)
	}
	return dls
}

// TestOrphanedPartRowsRedone: a run dies after storing a dead-letter part
// but before the commit that lists it. The part is orphaned: the manifest
// neither lists it nor counts its rows, and the next run dead-letters those
// rows again, in a part it lists. Nothing is lost and nothing counted twice.
func TestOrphanedPartRowsRedone(t *testing.T) {
	ctx := context.Background()
	objs := testObjects()[:2]
	refused := func(r *http.Request) bool { return strings.Contains(r.URL.Query().Get("sid"), "1") }
	stub := newConvertroStub(t, func(r *http.Request, _ int) int {
		if refused(r) {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	raw, err := OpenState(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	// One owner for both runs: the first one's lease, never released, is
	// then no obstacle, as a dead process's lease on this host is not.
	owner := NewLease()
	run := func(st StateStore, sink *stateDeadLetters) (*Report, error) {
		cp, prev, err := OpenCheckpoint(ctx, st, Shard{0, 1}, owner, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return Run(ctx, Config{Job: testJob, Objects: objs, Decoders: 2, Concurrency: 4},
			Deps{Decoder: &memDecoder{batch: 5}, NewTransform: newTestTransform(stub.URL), Sender: httpSender{stub.Client()},
				DeadLetters: sink, Checkpoint: cp, Previous: prev, State: st})
	}

	fs := &failingState{StateStore: raw}
	if _, err := run(fs, &stateDeadLetters{st: raw, arm: fs, run: "a"}); !errors.Is(err, errInjected) {
		t.Fatalf("first run: err = %v, want the injected commit failure", err)
	}
	mid := readManifest(t, dir, Shard{0, 1})
	orphan := "dead-letters/0-of-1/a-00001.json"
	if got := readPart(t, raw, orphan); len(got) == 0 {
		t.Fatal("the orphaned part holds no dead letter")
	}
	for _, f := range mid.DeadLetterFiles {
		if f == orphan {
			t.Fatalf("the manifest lists the part whose commit failed: %v", mid.DeadLetterFiles)
		}
	}

	// The resume.
	if _, err := run(raw, &stateDeadLetters{st: raw, run: "b"}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("resume: err = %v, want ErrIncomplete (dead letters)", err)
	}
	m := readManifest(t, dir, Shard{0, 1})
	type rowKey struct {
		obj      string
		rg       int
		row      int64
		url, rsn string
	}
	listed := map[rowKey]bool{}
	for _, f := range m.DeadLetterFiles {
		if f == orphan {
			t.Fatalf("the resumed manifest lists the orphaned part: %v", m.DeadLetterFiles)
		}
		for _, d := range readPart(t, raw, f) {
			k := rowKey{d.Object, d.RowGroup, d.Row, d.URL, ""}
			if listed[k] {
				t.Errorf("dead letter listed twice: %+v", k)
			}
			listed[k] = true
		}
	}
	for _, d := range readPart(t, raw, orphan) {
		if !listed[rowKey{d.Object, d.RowGroup, d.Row, d.URL, ""}] {
			t.Errorf("a row of the orphaned part was not dead-lettered again on resume: %s row group %d row %d", d.Object, d.RowGroup, d.Row)
		}
	}
	want := 0
	for _, r := range expect(objs).requests {
		if u, _ := url.Parse(r); refused(&http.Request{URL: u}) {
			want++
		}
	}
	c := m.Counts
	if c.RequestsDeadLettered != int64(len(listed)) || len(listed) != want || c.DeadLetterGroups["400 Bad Request"].Count != int64(want) {
		t.Errorf("counts %+v: %d listed, %d refused requests", c, len(listed), want)
	}
	if err := checkCounts(c, markedRows(m.Units)); err != nil {
		t.Error(err)
	}
}
