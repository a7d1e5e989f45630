package jobs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/convertro-etl/convertro-etl/writers"
)

// The diff of an audience sync. The previous snapshot, the source's
// membership and trait rows and the device lookup are spilled into N temporary files
// by a hash of the user id, so that everything about one user lands in one
// partition; then each partition is read back and diffed in memory on its
// own. Peak memory is that of the largest partition, whatever the total:
// N is chosen so that a partition holds about partitionRows records.

// partitionRows is the target number of spilled records per partition:
// about 40 MB of maps and strings in memory at a time.
const partitionRows = 200_000

const maxPartitions = 4096

// Record kinds in a spill file.
const (
	recSnapshot byte = iota // what Convertro was last told
	recSource               // a membership row of the source
	recDevice               // a device id seen for a user
)

// spillRec is one spilled record. For a device record Audience is empty and
// DeviceID holds the device. Micros is the row's time (0 when unknown), Seq
// the order it was read in: the latest (Micros, Seq) of a key wins. Audience
// is the key of a user property: an audience, or a computed trait, whose
// Value is its typed value (traitValue) and whose Member says it is set.
type spillRec struct {
	Kind     byte
	UserID   string
	Audience string
	Member   bool
	DeviceID string
	Micros   int64
	Seq      int64
	Value    string
}

// spill writes records into n partition files under dir.
type spill struct {
	dir   string
	files []*os.File
	bufs  []*bufio.Writer
	seq   int64
	rows  int64
	bytes int64 // size of the spill files, known after finish
	tmp   []byte
}

func newSpill(dir string, n int) (*spill, error) {
	s := &spill{dir: dir, files: make([]*os.File, n), bufs: make([]*bufio.Writer, n)}
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("part-%04d.spill", i)))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("create spill file: %w", err)
		}
		s.files[i], s.bufs[i] = f, bufio.NewWriterSize(f, 32<<10)
	}
	return s, nil
}

func partitionsFor(rows int64) int {
	n := int((rows + partitionRows - 1) / partitionRows)
	return max(1, min(n, maxPartitions))
}

// partition hashes the user id (FNV-1a, inline: no allocation per record).
func (s *spill) partition(user string) int {
	h := uint64(14695981039346656037)
	for i := 0; i < len(user); i++ {
		h ^= uint64(user[i])
		h *= 1099511628211
	}
	return int(h % uint64(len(s.files)))
}

func (s *spill) add(r spillRec) error {
	s.seq++
	r.Seq = s.seq
	s.rows++
	b := s.tmp[:0]
	b = append(b, r.Kind)
	b = binary.AppendUvarint(b, uint64(len(r.UserID)))
	b = append(b, r.UserID...)
	b = binary.AppendUvarint(b, uint64(len(r.Audience)))
	b = append(b, r.Audience...)
	if r.Member {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(r.DeviceID)))
	b = append(b, r.DeviceID...)
	b = binary.AppendVarint(b, r.Micros)
	b = binary.AppendVarint(b, r.Seq)
	b = binary.AppendUvarint(b, uint64(len(r.Value)))
	b = append(b, r.Value...)
	s.tmp = b
	if _, err := s.bufs[s.partition(r.UserID)].Write(b); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	return nil
}

// finish flushes every partition file; they are read back by readPartition.
func (s *spill) finish() error {
	for i, w := range s.bufs {
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write spill file: %w", err)
		}
		n, err := s.files[i].Seek(0, io.SeekCurrent)
		if err != nil {
			return fmt.Errorf("read spill file: %w", err)
		}
		s.bytes += n
		if _, err := s.files[i].Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("read spill file: %w", err)
		}
	}
	return nil
}

func (s *spill) close() {
	for _, f := range s.files {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

// readPartition calls fn for every record of partition i, in spill order.
func (s *spill) readPartition(i int, fn func(r *spillRec)) error {
	br := bufio.NewReaderSize(s.files[i], 64<<10)
	var r spillRec
	var scratch []byte
	raw := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if n > 1<<20 {
			return nil, fmt.Errorf("string of %d bytes", n)
		}
		if uint64(cap(scratch)) < n {
			scratch = make([]byte, n)
		}
		b := scratch[:n]
		_, err = io.ReadFull(br, b)
		return b, err
	}
	str := func() (string, error) {
		b, err := raw()
		return string(b), err
	}
	// Audience keys are few: one string each per partition, not per record.
	audiences := map[string]string{}
	audience := func() (string, error) {
		b, err := raw()
		if err != nil {
			return "", err
		}
		a, ok := audiences[string(b)]
		if !ok {
			a = string(b)
			audiences[a] = a
		}
		return a, nil
	}
	for {
		k, err := br.ReadByte()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read spill file: %w", err)
		}
		r = spillRec{Kind: k}
		var m byte
		if r.UserID, err = str(); err == nil {
			if r.Audience, err = audience(); err == nil {
				if m, err = br.ReadByte(); err == nil {
					r.Member = m == 1
					if r.DeviceID, err = str(); err == nil {
						if r.Micros, err = binary.ReadVarint(br); err == nil {
							if r.Seq, err = binary.ReadVarint(br); err == nil {
								r.Value, err = str()
							}
						}
					}
				}
			}
		}
		if err != nil {
			return fmt.Errorf("read spill file %s: truncated record: %w", s.files[i].Name(), err)
		}
		fn(&r)
	}
}

// diffResult counts what a diff found.
type diffResult struct {
	Changes int64 // rows of the changes file (with those lacking a device)
	// Entered counts memberships entered and trait values set or changed,
	// Left memberships left and traits removed.
	Entered, Left int64
	NoDevice      int64 // changes without a device id anywhere
	Snapshot      int64 // rows of the new snapshot
	Members       int64 // members, and traits set, in the new snapshot
}

type memberState struct {
	member bool
	device string
	micros int64
	seq    int64
	value  string // a computed trait's typed value; "" for an audience
}

// diffOptions says what the diff needs besides the spilled records.
type diffOptions struct {
	// inScope says whether an audience key is part of this sync: snapshot
	// rows of other audiences are kept as they are.
	inScope func(audience string) bool
	// now is the sync's time (Unix seconds), the ts of a change whose source
	// row has no time.
	now int64
	// absentLeaves says that a member the source does not mention has left:
	// true when the source is a whole membership table; false for streams of
	// events (identifies, audience_entered/exited), which may be one day's
	// worth, where silence is no news.
	absentLeaves bool
	// absentRemoves says the same of computed traits: a trait the source
	// does not mention is removed (the source is a whole traits table).
	absentRemoves bool
}

// diff reads the partitions one by one and writes the changes (in user,
// audience order within a partition) and the new snapshot.
func (s *spill) diff(o diffOptions, changes, snapshot *writers.MembershipWriter) (diffResult, error) {
	var res diffResult
	for p := range s.files {
		prev := map[string]memberState{}
		cur := map[string]memberState{}
		devices := map[string]memberState{}
		later := func(a, b memberState) bool { return a.micros > b.micros || (a.micros == b.micros && a.seq > b.seq) }
		err := s.readPartition(p, func(r *spillRec) {
			st := memberState{member: r.Member, device: r.DeviceID, micros: r.Micros, seq: r.Seq, value: r.Value}
			switch r.Kind {
			case recSnapshot:
				prev[r.UserID+"\x00"+r.Audience] = st
			case recSource:
				k := r.UserID + "\x00" + r.Audience
				if old, ok := cur[k]; !ok || later(st, old) {
					if st.device == "" && ok {
						st.device = old.device
					}
					cur[k] = st
				} else if old.device == "" && st.device != "" {
					old.device = st.device
					cur[k] = old
				}
			case recDevice:
				if old, ok := devices[r.UserID]; !ok || later(st, old) {
					devices[r.UserID] = st
				}
			}
		})
		if err != nil {
			return res, err
		}
		keys := make([]string, 0, len(prev)+len(cur))
		for k := range prev {
			keys = append(keys, k)
		}
		for k := range cur {
			if _, dup := prev[k]; !dup {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			user, audience, _ := strings.Cut(k, "\x00")
			was, had := prev[k]
			keep := func() error {
				if !had {
					return nil
				}
				res.Snapshot++
				if was.member {
					res.Members++
				}
				return snapshot.Write(writers.Membership{UserID: user, Audience: audience, Member: was.member, DeviceID: was.device, TS: was.micros / 1e6, Value: was.value})
			}
			if !o.inScope(audience) {
				if err := keep(); err != nil {
					return res, err
				}
				continue
			}
			now, has := cur[k]
			// Whether silence means gone depends on the key's kind: a
			// trait's snapshot row holds a value, an audience's does not.
			gone := o.absentLeaves
			if was.value != "" {
				gone = o.absentRemoves
			}
			if !has && !gone {
				if err := keep(); err != nil {
					return res, err
				}
				continue
			}
			// A property is unchanged when it is unset on both sides (not a
			// member, a trait removed or never set), or set on both with the
			// same value: for a trait the same type and the same value.
			want := has && now.member
			if want == (had && was.member) && (!want || now.value == was.value) {
				if err := keep(); err != nil {
					return res, err
				}
				continue
			}
			device := now.device
			if device == "" {
				device = devices[user].device
			}
			if device == "" && !want {
				device = was.device // who left is told on the device Convertro knows
			}
			ts := o.now
			if has && now.micros != 0 {
				ts = floorDiv(now.micros, 1e6)
			}
			value := now.value
			if !want && (has && now.value != "" || had && was.value != "") {
				value = traitRemoved // a trait that was set is removed
			}
			ch := writers.Membership{UserID: user, Audience: audience, Member: want, DeviceID: device, TS: ts, Value: value}
			if err := changes.Write(ch); err != nil {
				return res, err
			}
			res.Changes++
			if device == "" {
				// Not sent: the snapshot keeps what Convertro knew, so the
				// change is found again once a device id turns up.
				res.NoDevice++
				if err := keep(); err != nil {
					return res, err
				}
				continue
			}
			if want {
				res.Entered++
				res.Members++
			} else {
				res.Left++
			}
			res.Snapshot++
			if err := snapshot.Write(ch); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
