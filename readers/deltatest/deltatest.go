// Package deltatest writes Delta tables by hand, for tests: Parquet data
// files, JSON commit files and Parquet checkpoints laid out and named as the
// Delta protocol says, without a Delta writer. Its action types are written
// from the protocol, apart from the reader's own, so that a test does not
// check the reader against itself.
package deltatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// Add is the add action: a file the table holds from this version on.
type Add struct {
	Path             string            `json:"path" parquet:"path,optional"`
	PartitionValues  map[string]string `json:"partitionValues" parquet:"partitionValues,optional"`
	Size             int64             `json:"size" parquet:"size,optional"`
	ModificationTime int64             `json:"modificationTime" parquet:"modificationTime,optional"`
	DataChange       bool              `json:"dataChange" parquet:"dataChange,optional"`
	Stats            string            `json:"stats,omitempty" parquet:"stats,optional"`
	DeletionVector   *DeletionVector   `json:"deletionVector,omitempty" parquet:"deletionVector,optional"`
}

// Remove is the remove action: a file the table no longer holds.
type Remove struct {
	Path              string          `json:"path" parquet:"path,optional"`
	DeletionTimestamp int64           `json:"deletionTimestamp" parquet:"deletionTimestamp,optional"`
	DataChange        bool            `json:"dataChange" parquet:"dataChange,optional"`
	Size              int64           `json:"size,omitempty" parquet:"size,optional"`
	DeletionVector    *DeletionVector `json:"deletionVector,omitempty" parquet:"deletionVector,optional"`
}

// DeletionVector describes the rows of a file that are deleted.
type DeletionVector struct {
	StorageType    string `json:"storageType" parquet:"storageType,optional"`
	PathOrInlineDv string `json:"pathOrInlineDv" parquet:"pathOrInlineDv,optional"`
	Offset         *int32 `json:"offset,omitempty" parquet:"offset,optional"`
	SizeInBytes    int32  `json:"sizeInBytes" parquet:"sizeInBytes,optional"`
	Cardinality    int64  `json:"cardinality" parquet:"cardinality,optional"`
}

// Format is the data files' format.
type Format struct {
	Provider string            `json:"provider" parquet:"provider,optional"`
	Options  map[string]string `json:"options" parquet:"options,optional"`
}

// MetaData is the metaData action: the table's schema and settings.
type MetaData struct {
	ID               string            `json:"id" parquet:"id,optional"`
	Format           Format            `json:"format" parquet:"format,optional"`
	SchemaString     string            `json:"schemaString" parquet:"schemaString,optional"`
	PartitionColumns []string          `json:"partitionColumns" parquet:"partitionColumns,list,optional"`
	Configuration    map[string]string `json:"configuration" parquet:"configuration,optional"`
	CreatedTime      int64             `json:"createdTime,omitempty" parquet:"createdTime,optional"`
}

// Protocol is the protocol action: what a reader must support.
type Protocol struct {
	MinReaderVersion int32    `json:"minReaderVersion" parquet:"minReaderVersion,optional"`
	MinWriterVersion int32    `json:"minWriterVersion" parquet:"minWriterVersion,optional"`
	ReaderFeatures   []string `json:"readerFeatures,omitempty" parquet:"readerFeatures,list,optional"`
	WriterFeatures   []string `json:"writerFeatures,omitempty" parquet:"writerFeatures,list,optional"`
}

// Txn is the txn action (a streaming writer's progress), present in
// checkpoints written by Spark; the reader has no use for it.
type Txn struct {
	AppID   string `json:"appId" parquet:"appId,optional"`
	Version int64  `json:"version" parquet:"version,optional"`
}

// Action is one line of a commit: exactly one field set.
type Action struct {
	Add        *Add           `json:"add,omitempty"`
	Remove     *Remove        `json:"remove,omitempty"`
	MetaData   *MetaData      `json:"metaData,omitempty"`
	Protocol   *Protocol      `json:"protocol,omitempty"`
	CommitInfo map[string]any `json:"commitInfo,omitempty"`
}

// checkpointRow is one row of a checkpoint: one action, the other columns
// NULL, in the order Spark writes them. Every column is optional, as in the
// checkpoints Spark writes.
type checkpointRow struct {
	Txn      *Txn      `parquet:"txn,optional"`
	Add      *Add      `parquet:"add,optional"`
	Remove   *Remove   `parquet:"remove,optional"`
	MetaData *MetaData `parquet:"metaData,optional"`
	Protocol *Protocol `parquet:"protocol,optional"`
}

// Table is a Delta table being written in a folder.
type Table struct {
	tb   testing.TB
	Dir  string
	next int64 // the next commit's version
	// live is the table's state after the last commit, for checkpoints.
	live     map[string]Add
	removed  map[string]Remove
	meta     *MetaData
	protocol *Protocol
}

// New starts a table in dir (created if need be); Create writes its first
// commit.
func New(tb testing.TB, dir string) *Table {
	tb.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "_delta_log"), 0o755); err != nil {
		tb.Fatal(err)
	}
	return &Table{tb: tb, Dir: dir, live: map[string]Add{}, removed: map[string]Remove{}}
}

// Version is the last committed version, -1 before the first commit.
func (t *Table) Version() int64 { return t.next - 1 }

// Schema is a schemaString of flat fields, name and Delta type in pairs.
func Schema(fields ...string) string {
	var fs []map[string]any
	for i := 0; i+1 < len(fields); i += 2 {
		fs = append(fs, map[string]any{"name": fields[i], "type": fields[i+1], "nullable": true, "metadata": map[string]any{}})
	}
	b, _ := json.Marshal(map[string]any{"type": "struct", "fields": fs})
	return string(b)
}

// Create commits version 0: a reader-version-1 protocol and the metadata.
func (t *Table) Create(schema string, partitionColumns []string, config map[string]string) {
	t.tb.Helper()
	if config == nil {
		config = map[string]string{}
	}
	if partitionColumns == nil {
		partitionColumns = []string{}
	}
	t.Commit("CREATE TABLE",
		Action{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 2}},
		Action{MetaData: &MetaData{ID: "5fba94ed-9794-4965-ba6e-6ee3c0d22af9", Format: Format{Provider: "parquet", Options: map[string]string{}},
			SchemaString: schema, PartitionColumns: partitionColumns, Configuration: config, CreatedTime: 1700000000000}})
}

// WriteFile writes rows as the Parquet data file rel (slash-separated,
// under the table's folder) and returns its add action, with the path
// URL-encoded as the protocol wants.
func WriteFile[T any](t *Table, rel string, partition map[string]string, rows []T) Add {
	t.tb.Helper()
	var b bytes.Buffer
	w := parquet.NewGenericWriter[T](&b)
	if _, err := w.Write(rows); err != nil {
		t.tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.tb.Fatal(err)
	}
	p := filepath.Join(t.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.tb.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.tb.Fatal(err)
	}
	if partition == nil {
		partition = map[string]string{}
	}
	return Add{Path: encodePath(rel), PartitionValues: partition, Size: int64(b.Len()),
		ModificationTime: 1700000000000, DataChange: true}
}

// encodePath URL-encodes each segment of a relative path.
func encodePath(rel string) string {
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// decoded is a path of the log decoded: the file it names.
func decoded(p string) string {
	if d, err := url.PathUnescape(p); err == nil {
		return d
	}
	return p
}

// Commit writes the next commit with actions and a commitInfo naming op,
// and returns its version.
func (t *Table) Commit(op string, actions ...Action) int64 {
	t.tb.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, a := range append(actions, Action{CommitInfo: map[string]any{"timestamp": 1700000000000 + t.next, "operation": op}}) {
		if err := enc.Encode(a); err != nil {
			t.tb.Fatal(err)
		}
		switch {
		case a.Add != nil:
			delete(t.removed, decoded(a.Add.Path))
			t.live[decoded(a.Add.Path)] = *a.Add
		case a.Remove != nil:
			delete(t.live, decoded(a.Remove.Path))
			t.removed[decoded(a.Remove.Path)] = *a.Remove
		case a.MetaData != nil:
			t.meta = a.MetaData
		case a.Protocol != nil:
			t.protocol = a.Protocol
		}
	}
	v := t.next
	t.next++
	t.write(fmt.Sprintf("%020d.json", v), b.Bytes())
	return v
}

// Checkpoint writes a single-part checkpoint of the last version (its
// protocol, metadata, live files and tombstones) and _last_checkpoint.
func (t *Table) Checkpoint() {
	t.tb.Helper()
	t.CheckpointParts(1)
}

// CheckpointParts writes the checkpoint of the last version in n parts
// (n = 1: the single-part name), and _last_checkpoint.
func (t *Table) CheckpointParts(n int) {
	t.tb.Helper()
	rows := []checkpointRow{{Protocol: t.protocol}, {MetaData: t.meta}, {Txn: &Txn{AppID: "stream", Version: 3}}}
	for _, a := range t.live {
		rows = append(rows, checkpointRow{Add: &a})
	}
	for _, r := range t.removed {
		rows = append(rows, checkpointRow{Remove: &r})
	}
	v := t.Version()
	for i := range n {
		var part []checkpointRow
		for j := i; j < len(rows); j += n {
			part = append(part, rows[j])
		}
		var b bytes.Buffer
		w := parquet.NewGenericWriter[checkpointRow](&b)
		if _, err := w.Write(part); err != nil {
			t.tb.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.tb.Fatal(err)
		}
		name := fmt.Sprintf("%020d.checkpoint.parquet", v)
		if n > 1 {
			name = fmt.Sprintf("%020d.checkpoint.%010d.%010d.parquet", v, i+1, n)
		}
		t.write(name, b.Bytes())
	}
	last, _ := json.Marshal(map[string]any{"version": v, "size": len(rows), "parts": n})
	t.write("_last_checkpoint", last)
}

// Live returns the add actions of the files the table holds now.
func (t *Table) Live() []Add {
	out := make([]Add, 0, len(t.live))
	for _, a := range t.live {
		out = append(out, a)
	}
	return out
}

// RemoveAction is the remove action of a file added by add.
func RemoveAction(add Add, dataChange bool) Action {
	return Action{Remove: &Remove{Path: add.Path, DeletionTimestamp: 1700000001000, DataChange: dataChange, Size: add.Size}}
}

// AddAction is the action of add.
func AddAction(add Add) Action { return Action{Add: &add} }

// WriteLog writes name in the table's _delta_log/ as it is.
func (t *Table) WriteLog(name string, data []byte) {
	t.tb.Helper()
	t.write(name, data)
}

func (t *Table) write(name string, data []byte) {
	if err := os.WriteFile(filepath.Join(t.Dir, "_delta_log", name), data, 0o644); err != nil {
		t.tb.Fatal(err)
	}
}
