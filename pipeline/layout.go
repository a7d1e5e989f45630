package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// ErrShardLayout: the state holds a job split into another number of shards
// than this run's. Each shard's manifest covers the units that hash to it
// for its count, so two counts on one state would plan the same units twice.
var ErrShardLayout = errors.New("the state's job is split into another number of shards")

// LayoutName is the state object that records how many shards the job in a
// state location is split into: written by the first run that begins, read
// by every run before it touches a manifest.
const LayoutName = "layout.json"

type layout struct {
	Shards int `json:"shards"`
}

// checkLayout refuses a shard whose count is not the state's. A state
// written before the layout was recorded is judged by its manifests' names.
func checkLayout(ctx context.Context, st StateStore, shard Shard) error {
	data, _, err := st.Read(ctx, LayoutName)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		l, ok := st.(stateLister)
		if !ok {
			return nil
		}
		names, err := l.ListKeys(ctx, "manifest-")
		if err != nil {
			return fmt.Errorf("check shard layout: %w", err)
		}
		for _, name := range names {
			if s, ok := parseManifestName(name); ok && s.Count != shard.Count {
				return layoutError(st, s.Count, shard)
			}
		}
		return nil
	case err != nil:
		return fmt.Errorf("check shard layout: %w", err)
	}
	var l layout
	if err := json.Unmarshal(data, &l); err != nil || l.Shards < 1 {
		return fmt.Errorf("check shard layout: %s: %w", st.URI(LayoutName), ErrBadManifest)
	}
	if l.Shards != shard.Count {
		return layoutError(st, l.Shards, shard)
	}
	return nil
}

// recordLayout writes the layout if the state has none yet; a concurrent
// first run with another count loses the race and is refused.
func recordLayout(ctx context.Context, st StateStore, shard Shard) error {
	if _, _, err := st.Read(ctx, LayoutName); err == nil {
		return nil
	}
	data, _ := json.Marshal(layout{Shards: shard.Count})
	_, err := st.Write(ctx, LayoutName, append(data, '\n'), objstore.IfAbsent)
	if errors.Is(err, objstore.ErrPrecondition) {
		return checkLayout(ctx, st, shard)
	}
	if err != nil {
		return fmt.Errorf("record shard layout: %w", err)
	}
	return nil
}

func layoutError(st StateStore, count int, shard Shard) error {
	return fmt.Errorf("shard %s: the job in %s is split into %d shards: finish it with that count (--shard i/%d, or --shards %d with JOB_COMPLETION_INDEX, or CLOUD_RUN_TASK_COUNT=%d), "+
		"or give a new --state to run it in %d shards (a finished job run with another count would send every row again): %w",
		shard, st.URI(""), count, count, count, count, shard.Count, ErrShardLayout)
}

// ReadLayout returns the shard count recorded in st (see LayoutName), for
// status, which needs it to name the shards that have not begun. It only
// reads. A state without a layout (no run began in it yet, or one written
// before layouts were recorded) is objstore.ErrNotFound; a layout that does
// not decode is ErrBadManifest.
func ReadLayout(ctx context.Context, st StateStore) (count int, err error) {
	data, _, err := st.Read(ctx, LayoutName)
	if err != nil {
		return 0, fmt.Errorf("read shard layout: %w", err)
	}
	var l layout
	if err := json.Unmarshal(data, &l); err != nil || l.Shards < 1 {
		return 0, fmt.Errorf("read shard layout: %s: %w", st.URI(LayoutName), ErrBadManifest)
	}
	return l.Shards, nil
}
