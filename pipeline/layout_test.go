package pipeline

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// TestReadLayout: status learns a job's shard count from the layout the
// first run records, before any other shard has a manifest; a state where
// nothing began has none, and a damaged layout is refused, not guessed.
func TestReadLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenState(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLayout(ctx, st); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("empty state: err = %v, want ErrNotFound", err)
	}
	stub := newConvertroStub(t, func(*http.Request, int) int { return http.StatusOK })
	cfg := Config{Objects: testObjects(), Decoders: 1, Concurrency: 2, Shard: Shard{1, 3}}
	if _, err := runLiveTest(t, ctx, dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{}); err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatalf("shard 1/3: %v", err)
	}
	if n, err := ReadLayout(ctx, st); err != nil || n != 3 {
		t.Fatalf("after shard 1/3 ran: ReadLayout = %d, %v; want 3", n, err)
	}
	if _, err := st.Write(ctx, LayoutName, []byte(`{"shards":0}`), objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLayout(ctx, st); !errors.Is(err, ErrBadManifest) {
		t.Errorf("layout of 0 shards: err = %v, want ErrBadManifest", err)
	}
}
