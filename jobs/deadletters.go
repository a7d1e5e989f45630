package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

// deadLetters keeps a run's dead letters in the state location as Parquet
// parts under dead-letters/<i>-of-<n>/. The pipeline flushes them before
// every manifest commit and records the part's name in the manifest, so a row
// the manifest counts as dead-lettered always has its record stored. A part
// stored just before a kill, whose commit never happened, is not in the
// manifest (an orphaned part), and its rows are dead-lettered again by the
// next run; readers take the manifest's list and merge with
// writers.MergeDeadLetters. ListDeadLetters and Status name orphaned parts;
// Replay deletes them, under the shard's lease (see cleanOrphans).
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
	d.pending = append(d.pending, storedDeadLetter(dl))
	return nil
}

// storedDeadLetter is dl as a dead-letter part stores it.
func storedDeadLetter(dl pipeline.DeadLetter) writers.DeadLetter {
	return writers.DeadLetter{
		MessageID: dl.MessageID, Object: dl.Object, RowGroup: int32(dl.RowGroup), Row: dl.Row,
		URL: dl.URL, Status: int32(dl.Status), Response: dl.Response, Reason: dl.Reason,
		Attempts: int32(dl.Attempts), Time: dl.Time,
	}
}

// loadedDeadLetter is a stored dead letter as the pipeline takes it.
func loadedDeadLetter(d writers.DeadLetter) pipeline.DeadLetter {
	return pipeline.DeadLetter{
		MessageID: d.MessageID, Object: d.Object, RowGroup: int(d.RowGroup), Row: d.Row,
		URL: d.URL, Status: int(d.Status), Response: d.Response, Reason: d.Reason,
		Attempts: int(d.Attempts), Time: d.Time,
	}
}

// Flush implements pipeline.DeadLetterSink: it stores the pending dead
// letters as one more part and names it.
func (d *deadLetters) Flush(ctx context.Context) (string, error) {
	if len(d.pending) == 0 {
		return "", nil
	}
	d.seq++
	name := fmt.Sprintf("%s%s-%05d.parquet", deadLetterDir(d.shard), d.run, d.seq)
	data, err := writers.DeadLetterFile(d.pending)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", d.st.URI(name), err)
	}
	if _, err := d.st.Write(ctx, name, data, objstore.IfAbsent); err != nil {
		return "", err
	}
	d.pending = d.pending[:0]
	return name, nil
}

// deadLetterDir is the folder of shard's dead-letter parts in the state.
func deadLetterDir(s pipeline.Shard) string {
	return fmt.Sprintf("dead-letters/%d-of-%d/", s.Index, s.Count)
}

// deadLetterShard is the shard whose folder holds the part name.
func deadLetterShard(name string) (pipeline.Shard, bool) {
	rest, ok := strings.CutPrefix(name, "dead-letters/")
	if !ok {
		return pipeline.Shard{}, false
	}
	dir, file, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(file, "/") || !strings.HasSuffix(file, ".parquet") {
		return pipeline.Shard{}, false
	}
	i, n, ok := strings.Cut(dir, "-of-")
	if !ok {
		return pipeline.Shard{}, false
	}
	s, err := pipeline.ParseShard(i + "/" + n)
	return s, err == nil
}

// orphanParts returns, by shard, the dead-letter parts in st that none of
// ms lists: parts stored by a run killed before the commit that would have
// listed them (or, after a replay, old parts it could not delete). Their
// rows are not counted, and the next run of the job dead-letters them again.
func orphanParts(ctx context.Context, st pipeline.StateStore, ms []*pipeline.Manifest) (map[pipeline.Shard][]string, error) {
	names, err := pipeline.ListState(ctx, st, "dead-letters/")
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	for _, m := range ms {
		for _, f := range m.DeadLetterFiles {
			listed[f] = true
		}
	}
	out := map[pipeline.Shard][]string{}
	for _, n := range names {
		if s, ok := deadLetterShard(n); ok && !listed[n] {
			out[s] = append(out[s], n)
		}
	}
	return out, nil
}

// cleanOrphans deletes the parts in m's shard folder that m does not list.
// The caller holds the shard's lease and m is the manifest it read under
// it: no other process can commit a manifest listing such a part any more
// (a run that lost the lease fails its next commit), so each is provably
// orphaned. It returns the parts deleted; a part that cannot be deleted is
// logged and left, to be tried again by the next replay.
func cleanOrphans(ctx context.Context, st pipeline.StateStore, m *pipeline.Manifest, env Env) []string {
	names, err := pipeline.ListState(ctx, st, deadLetterDir(m.Shard))
	if err != nil {
		env.Log.Warn("orphaned dead-letter parts not looked for", "shard", m.Shard.String(), "err", err)
		return nil
	}
	var gone []string
	for _, n := range names {
		if s, ok := deadLetterShard(n); !ok || s != m.Shard || slices.Contains(m.DeadLetterFiles, n) {
			continue
		}
		if err := st.Delete(ctx, n); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			env.Log.Warn("orphaned dead-letter part not deleted", "uri", st.URI(n), "err", err)
			continue
		}
		env.Log.Info("deleted an orphaned dead-letter part (not in the manifest: its rows were not counted and are sent again by the next run)",
			"uri", st.URI(n))
		gone = append(gone, n)
	}
	return gone
}

// DeadLetterListOptions are the options of ListDeadLetters.
type DeadLetterListOptions struct {
	State string
	JSON  bool // one JSON object per line instead of a table
	// URLs prints each dead letter's URL, which holds personal data (device
	// and user ids, IP, user agent); without it, URLs are left out and
	// replaced by <url> in the reasons.
	URLs bool
}

// DeadLetterLine is one dead letter as ListDeadLetters writes it in JSON.
type DeadLetterLine struct {
	Shard     string    `json:"shard"`
	Object    string    `json:"object"`
	RowGroup  int32     `json:"row_group"`
	Row       int64     `json:"row"`
	MessageID string    `json:"message_id"`
	Status    int32     `json:"status"`
	Class     string    `json:"class"` // the group in the manifest's counts
	Reason    string    `json:"reason"`
	Response  string    `json:"response,omitempty"`
	Attempts  int32     `json:"attempts"`
	Time      time.Time `json:"time"`
	URL       string    `json:"url,omitempty"` // with URLs only
}

// ListDeadLetters writes to env.Stdout every dead letter the manifests in
// o.State list, shard by shard, in the order of their rows' origin: one
// line each (object, row group, row, status, reason, start of the answer),
// or one JSON object each (DeadLetterLine). Parts that no manifest lists
// (orphaned by a kill: not counted, redone by the next run, deleted by
// replay) are named on env.Stderr, not listed.
func ListDeadLetters(ctx context.Context, o DeadLetterListOptions, env Env) error {
	env = env.withDefaults()
	st, ms, err := stateManifests(ctx, "dead letters", o.State)
	if err != nil {
		return err
	}
	out := env.Stdout
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	if !o.JSON {
		fmt.Fprintln(out, "SHARD\tOBJECT\tROW GROUP\tROW\tSTATUS\tREASON\tRESPONSE")
	}
	for _, m := range ms {
		var parts [][]writers.DeadLetter
		for _, name := range m.DeadLetterFiles {
			data, _, err := st.Read(ctx, name)
			if err != nil {
				return fmt.Errorf("dead letters of shard %s: %w", m.Shard, err)
			}
			dls, err := writers.DecodeDeadLetters(st.URI(name), data)
			if err != nil {
				return err
			}
			parts = append(parts, dls)
		}
		for _, d := range writers.MergeDeadLetters(parts...) {
			var err error
			if o.JSON {
				err = enc.Encode(deadLetterLine(m.Shard, d, o.URLs))
			} else {
				err = writeDeadLetter(out, m.Shard, d, o.URLs)
			}
			if err != nil {
				return fmt.Errorf("write dead letters: %w", err)
			}
		}
	}
	orphans, err := orphanParts(ctx, st, ms)
	if err != nil {
		return err
	}
	writeOrphans(env.Stderr, st, orphans)
	return nil
}

func deadLetterLine(s pipeline.Shard, d writers.DeadLetter, urls bool) DeadLetterLine {
	l := DeadLetterLine{Shard: s.String(), Object: d.Object, RowGroup: d.RowGroup, Row: d.Row, MessageID: d.MessageID,
		Status: d.Status, Class: pipeline.DeadLetterClass(int(d.Status), nil), Reason: d.Reason, Response: d.Response,
		Attempts: d.Attempts, Time: d.Time}
	if urls {
		l.URL = d.URL
	} else {
		l.Reason = redactURL(d.Reason, d.URL)
	}
	return l
}

// maxResponseShown bounds the answer a table line shows.
const maxResponseShown = 120

func writeDeadLetter(w io.Writer, s pipeline.Shard, d writers.DeadLetter, urls bool) error {
	reason := d.Reason
	if !urls {
		reason = redactURL(reason, d.URL)
	}
	resp := strings.TrimSpace(d.Response)
	if len(resp) > maxResponseShown {
		resp = resp[:maxResponseShown] + "…"
	}
	line := s.String() + "\t" + d.Object + "\t" + strconv.Itoa(int(d.RowGroup)) + "\t" + strconv.FormatInt(d.Row, 10) +
		"\t" + strconv.Itoa(int(d.Status)) + "\t" + oneLine(reason) + "\t" + strconv.Quote(resp)
	if urls {
		line += "\t" + d.URL
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}

// redactURL replaces u in reason (the client's errors quote the URL) by
// "<url>". A reason cut short may hold only the start of u: from its
// scheme and host on, it is cut.
func redactURL(reason, u string) string {
	if u == "" {
		return reason
	}
	reason = strings.ReplaceAll(reason, u, "<url>")
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		if i := strings.Index(reason, p.Scheme+"://"+p.Host); i >= 0 {
			reason = reason[:i] + "<url>…"
		}
	}
	return reason
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(s)
}

// writeOrphans names the orphaned parts, one line each.
func writeOrphans(w io.Writer, st pipeline.StateStore, orphans map[pipeline.Shard][]string) {
	shards := make([]pipeline.Shard, 0, len(orphans))
	for s := range orphans {
		shards = append(shards, s)
	}
	slices.SortFunc(shards, func(a, b pipeline.Shard) int {
		if a.Count != b.Count {
			return a.Count - b.Count
		}
		return a.Index - b.Index
	})
	for _, s := range shards {
		for _, n := range orphans[s] {
			fmt.Fprintf(w, "orphaned dead-letter part of shard %s: %s: not in the manifest (stored by a run killed before its commit); its rows were not counted and the next run sends them again; replay deletes it\n",
				s, st.URI(n))
		}
	}
}
