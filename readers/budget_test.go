package readers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// budgetFile writes name in dir: groups row groups of rows rows each,
// whose message ids say their place ("g<group>-<row>") and whose anonymous
// ids and user agents are random, so that they do not compress: some 300
// bytes a row.
func budgetFile(t *testing.T, dir, name string, groups, rows int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(groups), uint64(rows)))
	random := func(n int) string {
		const hex = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = hex[rng.IntN(16)]
		}
		return string(b)
	}
	all := make([][]any, 0, groups*rows)
	for g := range groups {
		for r := range rows {
			all = append(all, []any{fmt.Sprintf("g%d-%d", g, r), "Signed Up", random(64), random(220)})
		}
	}
	writeParquet(t, dir, name, []tcol{{"message_id", strNode}, {"event", strNode}, {"anonymous_id", strNode},
		{"context_user_agent", strNode}}, all, parquet.MaxRowsPerRowGroup(int64(rows)))
}

// checkGroup reads row group g of p and checks its message ids.
func checkGroup(ctx context.Context, p *ParquetFile, g int) error {
	want := p.RowGroups()[g].Rows
	var n int64
	err := p.ReadRowGroup(ctx, g, 0, func(first int64, batch []segment.Message) error {
		for i := range batch {
			if id, w := string(batch[i].MessageID), fmt.Sprintf("g%d-%d", g, first+int64(i)); id != w || len(batch[i].AnonymousID) != 64 {
				return fmt.Errorf("row %d of row group %d: id %q, anonymous id of %d bytes; want %q",
					first+int64(i), g, id, len(batch[i].AnonymousID), w)
			}
		}
		n += int64(len(batch))
		return nil
	})
	if err == nil && n != want {
		err = fmt.Errorf("row group %d: %d rows, want %d", g, n, want)
	}
	return err
}

// With the smallest budget, two sources sharing it and more readers at
// once than the decoders it was sized for, asking for read-ahead as the
// job does: row groups that fit a decoder's share are fetched whole or
// read ahead, one larger than the whole budget is streamed, every row
// comes through, the bytes held never exceed the budget, and all of them
// are given back when the files are released.
func TestMemoryBudgetBoundsReadPath(t *testing.T) {
	ctx := t.Context()
	small, large := t.TempDir(), t.TempDir()
	budgetFile(t, small, "small.parquet", 48, 500)   // row groups of ~150 KB, 7 MB in all
	budgetFile(t, large, "large.parquet", 3, 20_000) // row groups of ~6 MB
	b := NewMemoryBudget(MinMemoryBudget, 2)

	type unit struct {
		p *ParquetFile
		g int
	}
	var files []*ParquetFile
	var units []unit
	for _, dir := range []string{small, large} {
		src := openSource(t, dir, SourceOptions{MemoryBudget: b})
		p := openOnlyParquet(t, src, false)
		files = append(files, p)
		for g := range p.RowGroups() {
			units = append(units, unit{p, g})
		}
	}
	large0 := files[1]
	if n := large0.RowGroups()[0].CompressedBytes; n <= b.Bytes() {
		t.Fatalf("large row group of %d bytes fits the budget of %d", n, b.Bytes())
	}
	if large0.planWhole(0, b) != nil || large0.streamFetch(0, b).stream == nil {
		t.Fatalf("a row group larger than the budget is not streamed through windows")
	}
	if files[0].planWhole(0, b) == nil {
		t.Fatalf("a small row group is not read whole")
	}

	next := make(chan int)
	go func() {
		defer close(next)
		for i := range units {
			next <- i
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, len(units))
	for range 4 {
		wg.Go(func() {
			for i := range next {
				u := units[i]
				// Read ahead every unit after this one: the budget, not the
				// caller, bounds what is held.
				for _, v := range units[i+1:] {
					v.p.Prefetch(v.g)
				}
				if err := checkGroup(ctx, u.p, u.g); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if hw := b.HighWater(); hw > b.Bytes() || hw == 0 {
		t.Errorf("read path held at most %d bytes under a budget of %d", hw, b.Bytes())
	}
	t.Logf("high-water mark %d bytes of a budget of %d", b.HighWater(), b.Bytes())
	for _, p := range files {
		p.Release()
	}
	if n := b.Held(); n != 0 {
		t.Errorf("%d bytes still counted after every file was released", n)
	}
}

// A row group larger than the whole budget, with the smallest budget and
// windows too small to be worth it (a share below a read buffer a column),
// is still read, as the library asks.
func TestRowGroupLargerThanBudgetStreams(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	budgetFile(t, dir, "large.parquet", 2, 20_000)
	b := NewMemoryBudget(MinMemoryBudget, 16) // a share of 192 KiB
	src := openSource(t, dir, SourceOptions{MemoryBudget: b})
	p := openOnlyParquet(t, src, false)
	if ft := p.streamFetch(0, b); p.planWhole(0, b) != nil || ft.stream != nil || ft.held != 0 {
		t.Fatalf("row group planned whole or through windows, holding %d bytes", ft.held)
	}
	p.Prefetch(0, 1)
	for g := range 2 {
		if err := checkGroup(ctx, p, g); err != nil {
			t.Fatal(err)
		}
	}
	if hw := b.HighWater(); hw > b.Bytes() {
		t.Errorf("read path held %d bytes under a budget of %d", hw, b.Bytes())
	}
	p.Release()
	if n := b.Held(); n != 0 {
		t.Errorf("%d bytes still counted after release", n)
	}
}

// Prefetch asked for more row groups than reading ahead's part of the
// budget holds reads the first ones that fit and says how many; asked
// again once those are decoded, it reads the next. AheadGroups tells a
// caller how many to ask for, from the sizes of those read.
func TestPrefetchReadsWhatFits(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	budgetFile(t, dir, "small.parquet", 48, 500) // row groups of ~150 KB
	b := NewMemoryBudget(MinMemoryBudget, 2)     // 1 MiB to read ahead
	p := openOnlyParquet(t, openSource(t, dir, SourceOptions{MemoryBudget: b}), false)
	if n := b.AheadGroups(); n != -1 {
		t.Fatalf("AheadGroups before any read = %d, want -1", n)
	}
	all := make([]int, len(p.RowGroups()))
	for g := range all {
		all[g] = g
	}
	fit := int(b.ahead / p.planFetch(0).held) // the row groups are alike
	n := p.Prefetch(all...)
	if n < fit-1 || n > fit || fit >= len(all) {
		t.Fatalf("Prefetch of %d row groups read %d ahead, want the %d that fit", len(all), n, fit)
	}
	if got := b.AheadGroups(); got < fit-1 || got > fit {
		t.Errorf("AheadGroups = %d, want %d", got, fit)
	}
	if again := p.Prefetch(all[n:]...); again != 0 {
		t.Errorf("Prefetch with no room read %d more", again)
	}
	for g := range n {
		if err := checkGroup(ctx, p, g); err != nil {
			t.Fatal(err)
		}
	}
	if more := p.Prefetch(all[n:]...); more < fit-1 {
		t.Errorf("Prefetch once %d row groups were decoded read %d more, want %d", n, more, fit)
	}
	for g := n; g < len(all); g++ {
		if err := checkGroup(ctx, p, g); err != nil {
			t.Fatal(err)
		}
	}
	if ahead, onDemand := b.Reads(); ahead < int64(2*fit-2) || ahead+onDemand != int64(len(all)) {
		t.Errorf("%d row groups read ahead and %d on demand, want at least %d of %d ahead", ahead, onDemand, 2*fit-2, len(all))
	}
	p.Release()
	if h := b.Held(); h != 0 {
		t.Errorf("%d bytes still counted after release", h)
	}
}
