package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

// deadLetters keeps a run's dead letters in the state location as Parquet
// parts under dead-letters/<i>-of-<n>/. The pipeline flushes them before
// every manifest commit and records the part's name in the manifest, so a row
// the manifest counts as dead-lettered always has its record stored. A part
// stored just before a kill, whose commit never happened, is not in the
// manifest, and its rows are dead-lettered again by the next run; readers
// take the manifest's list and merge with writers.MergeDeadLetters.
type deadLetters struct {
	st      pipeline.StateStore
	shard   pipeline.Shard
	run     string
	seq     int
	pending []writers.DeadLetter
}

func newDeadLetters(st pipeline.StateStore, shard pipeline.Shard, now func() time.Time) *deadLetters {
	return &deadLetters{st: st, shard: shard, run: now().UTC().Format("20060102T150405.000000000Z")}
}

// WriteDeadLetter implements pipeline.DeadLetterSink.
func (d *deadLetters) WriteDeadLetter(dl pipeline.DeadLetter) error {
	d.pending = append(d.pending, writers.DeadLetter{
		MessageID: dl.MessageID, Object: dl.Object, RowGroup: int32(dl.RowGroup), Row: dl.Row,
		URL: dl.URL, Status: int32(dl.Status), Response: dl.Response, Reason: dl.Reason,
		Attempts: int32(dl.Attempts), Time: dl.Time,
	})
	return nil
}

// Flush implements pipeline.DeadLetterSink: it stores the pending dead
// letters as one more part and names it.
func (d *deadLetters) Flush(ctx context.Context) (string, error) {
	if len(d.pending) == 0 {
		return "", nil
	}
	d.seq++
	name := fmt.Sprintf("dead-letters/%d-of-%d/%s-%05d.parquet", d.shard.Index, d.shard.Count, d.run, d.seq)
	data, err := writers.DeadLetterFile(d.pending)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", d.st.URI(name), err)
	}
	if _, err := d.st.Write(ctx, name, data, pipeline.IfAbsent); err != nil {
		return "", err
	}
	d.pending = d.pending[:0]
	return name, nil
}
