package readers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
