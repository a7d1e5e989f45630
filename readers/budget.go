package readers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// DefaultMemoryBudget is the memory budget of the read path unless told
// otherwise (see MemoryBudget).
//
// Peak RSS of a dry run of a 41-column file with 131,072-row groups of
// 17 MB (compressed, the columns read) is about 2 times what the read path
// holds plus some 17 MB a decoder (parquet-go's pages and dictionaries,
// which no budget of bytes read counts); 128 MiB keeps 8 decoders under
// 300 MiB and holds the row groups of an export of small objects many
// units ahead.
const DefaultMemoryBudget = 128 << 20

// MinMemoryBudget is the smallest budget accepted: a row group is then
// streamed through windows of at least readBufferSize per column.
const MinMemoryBudget = 4 << 20

// MemoryBudget bounds the bytes of objects the read path holds in memory
// at once, whatever the shape of the input: the column chunks of the row
// groups being decoded, those read ahead, and the footers kept from
// planning. A quarter goes to reading ahead and keeping footers (footers
// at most half of that quarter), taken only while there is room: what
// finds none is read when decoded instead. The rest is shared by the
// decoders: a decoder takes its row group's bytes before reading them,
// waiting while others hold them, and a row group larger than a
// decoder's share (the rest divided by the decoders) is not read whole
// but streamed, each column through a window of its part of the share.
// Beyond what it counts, a budget keeps the buffers of large row groups
// decoded for the next fetches, up to an eighth of it idle.
//
// One budget serves every Source of a job (SourceOptions.MemoryBudget);
// it is safe for concurrent use.
type MemoryBudget struct {
	total    int64
	ahead    int64 // what reading ahead and footers may hold
	footers  int64 // what footers may hold, within ahead
	share    int64 // a decoder's part of what decoding holds
	decoding *semaphore.Weighted

	aheadHeld  atomic.Int64
	footerHeld atomic.Int64
	held       atomic.Int64 // everything counted, for HighWater
	high       atomic.Int64

	// bufs keeps the buffers of decoded row groups, up to an eighth of
	// the budget idle.
	bufs fetchBuffers

	// The bytes of the row groups read whole lately, and how many
	// (halved together past recentGroups): what AheadGroups divides by.
	recentMu                  sync.Mutex
	recentBytes, recentGroups int64

	// The row groups decoders found read ahead, and those they read
	// themselves (see Reads).
	readAhead, readOnDemand atomic.Int64
}

// Reads is how many row groups decoders found read, or being read, ahead
// of them, and how many they had to start reading themselves (none was
// asked for ahead, or the budget had no room for it, or it is streamed).
func (b *MemoryBudget) Reads() (ahead, onDemand int64) {
	return b.readAhead.Load(), b.readOnDemand.Load()
}

// recentGroups is how many row groups read whole AheadGroups averages
// over, about: enough to smooth the sizes of one table's objects, few
// enough to follow a run from one table to the next.
const recentGroups = 64

// noteRead records a read of groups row groups whole, of n bytes in all.
func (b *MemoryBudget) noteRead(n int64, groups int) {
	b.recentMu.Lock()
	defer b.recentMu.Unlock()
	b.recentBytes += n
	b.recentGroups += int64(groups)
	if b.recentGroups > recentGroups {
		b.recentBytes /= 2
		b.recentGroups /= 2
	}
}

// AheadGroups is how many row groups of the size of those read lately
// reading ahead can hold beside the footers kept, or -1 before any was
// read (or when they were read from what the footers kept, at no cost).
// A caller that asks for row groups ahead asks for no more than that:
// asked beyond it, the farther ones take the room before the nearer ones,
// which are then read only when decoded.
func (b *MemoryBudget) AheadGroups() int {
	b.recentMu.Lock()
	n, groups := b.recentBytes, b.recentGroups
	b.recentMu.Unlock()
	if n <= 0 || groups <= 0 {
		return -1
	}
	return int(max(b.ahead-b.footerHeld.Load(), 0) * groups / n)
}

// NewMemoryBudget returns a budget of bytes (at least MinMemoryBudget)
// shared by decoders decoders (at least one).
func NewMemoryBudget(bytes int64, decoders int) *MemoryBudget {
	bytes = max(bytes, MinMemoryBudget)
	decoders = max(decoders, 1)
	ahead := bytes / 4
	return &MemoryBudget{
		total:    bytes,
		ahead:    ahead,
		footers:  ahead / 2,
		share:    (bytes - ahead) / int64(decoders),
		decoding: semaphore.NewWeighted(bytes - ahead),
		bufs:     fetchBuffers{max: bytes / 8},
	}
}

// errOverShare is a decoder asking more than its share: a bug, reported
// rather than waited for.
var errOverShare = errors.New("read path over its memory budget")

// defaultBudget serves Sources opened without one and Files not opened by
// a Source.
var defaultBudget = NewMemoryBudget(DefaultMemoryBudget, runtime.GOMAXPROCS(0))

// Bytes is the budget.
func (b *MemoryBudget) Bytes() int64 { return b.total }

// HighWater is the most the read path held at once under this budget.
func (b *MemoryBudget) HighWater() int64 { return b.high.Load() }

// Held is what the read path holds now under this budget.
func (b *MemoryBudget) Held() int64 { return b.held.Load() }

func (b *MemoryBudget) count(n int64) {
	h := b.held.Add(n)
	for {
		cur := b.high.Load()
		if h <= cur || b.high.CompareAndSwap(cur, h) {
			return
		}
	}
}

// take waits for n bytes of decoding's part. No decoder takes more than
// its share (what is larger is streamed), so that decoders waiting for
// bytes always get them.
func (b *MemoryBudget) take(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	if n > b.share {
		return fmt.Errorf("%w: %d bytes asked of a decoder's share of %d", errOverShare, n, b.share)
	}
	if err := b.decoding.Acquire(ctx, n); err != nil {
		return context.Cause(ctx)
	}
	b.count(n)
	return nil
}

// give returns what take took.
func (b *MemoryBudget) give(n int64) {
	if n <= 0 {
		return
	}
	b.count(-n)
	b.decoding.Release(n)
}

// tryAhead takes n bytes of reading ahead's part if they are free, never
// waiting.
func (b *MemoryBudget) tryAhead(n int64) bool {
	if n <= 0 {
		return true
	}
	if b.aheadHeld.Add(n) > b.ahead {
		b.aheadHeld.Add(-n)
		return false
	}
	b.count(n)
	return true
}

// aheadFree is what tryAhead may take now.
func (b *MemoryBudget) aheadFree() int64 { return b.ahead - b.aheadHeld.Load() }

// giveAhead returns what tryAhead took.
func (b *MemoryBudget) giveAhead(n int64) {
	if n <= 0 {
		return
	}
	b.count(-n)
	b.aheadHeld.Add(-n)
}

// tryFooter takes n bytes for a kept footer, within the footers' part of
// reading ahead's.
func (b *MemoryBudget) tryFooter(n int64) bool {
	if b.footerHeld.Add(n) > b.footers {
		b.footerHeld.Add(-n)
		return false
	}
	if !b.tryAhead(n) {
		b.footerHeld.Add(-n)
		return false
	}
	return true
}

// giveFooter returns what tryFooter took.
func (b *MemoryBudget) giveFooter(n int64) {
	b.footerHeld.Add(-n)
	b.giveAhead(n)
}

// fetchBuffers keeps the buffers of row groups decoded for the next
// fetches. A buffer fresh from the runtime is zeroed or faulted in page by
// page before the read fills it: on the wide 41-column file, the page
// faults of reads into fresh buffers took 11% of a dry run's processor
// time. A fetch takes the smallest idle buffer that holds it, if that is
// at most a quarter larger, so that what a fetch holds stays near what
// the budget counts; idle buffers are kept up to a bound of bytes, and
// those smaller than minPooled are left to the allocator, which reuses
// small sizes well.
type fetchBuffers struct {
	mu   sync.Mutex
	free [][]byte // by capacity
	idle int64
	max  int64
}

// minPooled is the smallest buffer kept: the allocator reuses smaller
// ones well (measured: pooling those of 64 KiB to 2 MiB, the warehouse
// export's, raised a dry run's peak RSS by 35 MiB and saved no time).
// Tests lower it.
var minPooled = 4 << 20

// get returns a buffer of n bytes, reused when an idle one fits. Its
// bytes are not zeroed: the caller overwrites them all.
func (p *fetchBuffers) get(n int) []byte {
	if n < minPooled {
		return make([]byte, n)
	}
	p.mu.Lock()
	k, _ := slices.BinarySearchFunc(p.free, n, func(b []byte, n int) int { return cmp.Compare(cap(b), n) })
	if k < len(p.free) && cap(p.free[k]) <= n+n/4 {
		b := p.free[k]
		p.free = slices.Delete(p.free, k, k+1)
		p.idle -= int64(cap(b))
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
	return make([]byte, n)
}

// put keeps b for a later get, unless the idle bytes would pass the
// bound. Nothing may use b after.
func (p *fetchBuffers) put(b []byte) {
	size := cap(b)
	if size < minPooled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle+int64(size) > p.max {
		return
	}
	k, _ := slices.BinarySearchFunc(p.free, size, func(b []byte, n int) int { return cmp.Compare(cap(b), n) })
	p.free = slices.Insert(p.free, k, b[:size])
	p.idle += int64(size)
}
