package jobs

import (
	"math"
	"strings"
	"sync"
)

// What a run keeps of each object for its whole length (its key, version
// and row group sizes) is copied into blocks shared by many objects,
// rather than kept where the listing and the footer made it.
//
// Those allocations are small and sit among the listing's and the footer
// decoder's garbage of the same sizes: one kept string or slice holds a
// whole span of the heap that is otherwise free. A dry run over 43,800
// objects held 21 MB of such spans (runtime/metrics heap/unused), as much
// as its live plan, for the whole run.

// packBlock is how many listed objects share one block of strings.
const packBlock = 1024

// packNames copies the names (key and version) of the listed objects into
// one block. The strings the listing made are then left to the collector.
func packNames(refs []inputRef) {
	n := 0
	for i := range refs {
		n += len(refs[i].name)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range refs {
		b.WriteString(refs[i].name)
	}
	s, off := b.String(), 0
	for i := range refs {
		r := &refs[i]
		r.name = s[off : off+len(r.name)]
		off += len(r.name)
	}
}

// codeBlock is how many keys in plan order make a block of frontCode: the
// first is held whole, so that finding or making a key reads at most a
// block.
const codeBlock = 16

// frontCode holds the keys of refs, in plan order (refs' order, whatever
// byURI says), as each key's first bytes shared with the key before it in
// its block (codeBlock) and the rest: a sorted listing's keys share most
// of their paths (a year of hourly partitions: the table, the day, most of
// the hour). The names are packed again into blocks of their own, and the
// listing's blocks let go.
func frontCode(refs []inputRef) {
	for at := 0; at < len(refs); at += packBlock {
		block := refs[at:min(at+packBlock, len(refs))]
		var prev string // the key before, whole
		for j := range block {
			r := &block[j]
			key := r.name[:r.keyLen]
			shared := 0
			if (at+j)%codeBlock != 0 {
				for shared < min(len(prev), len(key), math.MaxUint16) && prev[shared] == key[shared] {
					shared++
				}
			}
			prev = key
			r.name, r.keyLen, r.shared = r.name[shared:], uint16(len(key)-shared), uint16(shared)
		}
		packNames(block)
	}
}

// rowSlab hands out the row-group sizes of the objects planned, from
// blocks shared by many objects. Safe for concurrent use.
type rowSlab struct {
	mu   sync.Mutex
	free []int64 // what is left of the current block
}

// rowSlabBlock is the slab's block, in row groups; an object with more
// than an eighth of it gets a slice of its own.
const rowSlabBlock = 4096

// take returns a slice of n row-group sizes, full to its capacity, so
// that nobody appending to it writes into another object's.
func (s *rowSlab) take(n int) []int64 {
	if n == 0 {
		return nil
	}
	if n > rowSlabBlock/8 {
		return make([]int64, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) < n {
		s.free = make([]int64, rowSlabBlock)
	}
	out := s.free[:n:n]
	s.free = s.free[n:]
	return out
}
