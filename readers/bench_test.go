package readers

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pqarrow "github.com/apache/arrow-go/v18/parquet"
	arrowfile "github.com/apache/arrow-go/v18/parquet/file"
	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// benchRow is a realistic 40-column warehouse `order_completed` row.
type benchRow struct {
	ID                    string    `parquet:"id"`
	AnonymousID           string    `parquet:"anonymous_id"`
	UserID                string    `parquet:"user_id,optional"`
	ContextDeviceID       string    `parquet:"context_device_id,optional"`
	ContextIP             string    `parquet:"context_ip,optional,dict"`
	ContextUserAgent      string    `parquet:"context_user_agent,optional,dict"`
	ContextLibraryName    string    `parquet:"context_library_name,dict"`
	ContextLibraryVersion string    `parquet:"context_library_version,dict"`
	ContextLocale         string    `parquet:"context_locale,dict"`
	ContextPageURL        string    `parquet:"context_page_url,optional"`
	ContextPagePath       string    `parquet:"context_page_path,optional,dict"`
	ContextPageReferrer   string    `parquet:"context_page_referrer,optional,dict"`
	ContextPageTitle      string    `parquet:"context_page_title,optional,dict"`
	ContextPageSearch     string    `parquet:"context_page_search,optional"`
	ContextCampaignName   string    `parquet:"context_campaign_name,optional,dict"`
	ContextCampaignSource string    `parquet:"context_campaign_source,optional,dict"`
	ContextCampaignMedium string    `parquet:"context_campaign_medium,optional,dict"`
	ContextOSName         string    `parquet:"context_os_name,optional,dict"`
	ContextOSVersion      string    `parquet:"context_os_version,optional,dict"`
	ContextAppVersion     string    `parquet:"context_app_version,optional,dict"`
	ContextTimezone       string    `parquet:"context_timezone,optional,dict"`
	Event                 string    `parquet:"event,dict"`
	EventText             string    `parquet:"event_text,dict"`
	OrderID               string    `parquet:"order_id,optional"`
	CheckoutID            string    `parquet:"checkout_id,optional"`
	Total                 float64   `parquet:"total,optional"`
	Revenue               float64   `parquet:"revenue,optional"`
	Subtotal              float64   `parquet:"subtotal,optional"`
	Shipping              float64   `parquet:"shipping,optional"`
	Tax                   float64   `parquet:"tax,optional"`
	Discount              float64   `parquet:"discount,optional"`
	Coupon                string    `parquet:"coupon,optional,dict"`
	Currency              string    `parquet:"currency,optional,dict"`
	Repeat                bool      `parquet:"repeat,optional"`
	Products              string    `parquet:"products,optional"`
	Timestamp             time.Time `parquet:"timestamp,timestamp(microsecond)"`
	OriginalTimestamp     time.Time `parquet:"original_timestamp,timestamp(microsecond)"`
	SentAt                time.Time `parquet:"sent_at,timestamp(microsecond)"`
	ReceivedAt            time.Time `parquet:"received_at,timestamp(microsecond)"`
	UUIDTs                time.Time `parquet:"uuid_ts,timestamp(microsecond)"`
}

var benchAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
}

// writeBenchFile writes n rows in row groups of rowGroup rows, Snappy.
func writeBenchFile(b *testing.B, path string, n, rowGroup int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := parquet.NewGenericWriter[benchRow](f, parquet.Compression(&parquet.Snappy), parquet.MaxRowsPerRowGroup(int64(rowGroup)))
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	buf := make([]benchRow, 0, 4096)
	for i := range n {
		ts := base.Add(time.Duration(i) * 37 * time.Millisecond)
		u := rng.IntN(200_000)
		r := benchRow{
			ID:                    fmt.Sprintf("ajs-next-%016x%016x", rng.Uint64(), rng.Uint64()),
			AnonymousID:           fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1)),
			UserID:                fmt.Sprintf("user_%07d", u),
			ContextDeviceID:       fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", rng.Uint32(), u&0xffff, rng.IntN(1<<16), rng.IntN(1<<16), uint64(u)*7919),
			ContextIP:             fmt.Sprintf("203.0.%d.%d", rng.IntN(64), rng.IntN(256)),
			ContextUserAgent:      benchAgents[rng.IntN(len(benchAgents))],
			ContextLibraryName:    "analytics.js",
			ContextLibraryVersion: "next-1.53.0",
			ContextLocale:         "en-US",
			ContextPageURL:        fmt.Sprintf("https://shop.example.com/checkout/thank-you?order=%d", i),
			ContextPagePath:       "/checkout/thank-you",
			ContextPageReferrer:   "https://shop.example.com/checkout",
			ContextPageTitle:      "Thank you for your order",
			ContextPageSearch:     fmt.Sprintf("?order=%d", i),
			ContextCampaignName:   []string{"", "spring_sale", "newsletter"}[rng.IntN(3)],
			ContextCampaignSource: []string{"", "google", "email"}[rng.IntN(3)],
			ContextCampaignMedium: []string{"", "cpc", "email"}[rng.IntN(3)],
			ContextOSName:         []string{"Windows", "Mac OS", "iOS", "Android"}[rng.IntN(4)],
			ContextOSVersion:      "10",
			ContextAppVersion:     "",
			ContextTimezone:       "America/New_York",
			Event:                 "order_completed",
			EventText:             "Order Completed",
			OrderID:               fmt.Sprintf("ORD-%09d", i),
			CheckoutID:            fmt.Sprintf("CHK-%09d", i),
			Total:                 float64(rng.IntN(100_000)) / 100,
			Revenue:               float64(rng.IntN(90_000)) / 100,
			Subtotal:              float64(rng.IntN(90_000)) / 100,
			Shipping:              float64(rng.IntN(2_000)) / 100,
			Tax:                   float64(rng.IntN(5_000)) / 100,
			Discount:              float64(rng.IntN(1_000)) / 100,
			Coupon:                []string{"", "SPRING10", "WELCOME"}[rng.IntN(3)],
			Currency:              "USD",
			Repeat:                rng.IntN(2) == 0,
			Products:              fmt.Sprintf(`[{"product_id":"%d","sku":"SKU-%d","price":%d.99,"quantity":%d}]`, rng.IntN(5000), rng.IntN(5000), rng.IntN(200), 1+rng.IntN(3)),
			Timestamp:             ts,
			OriginalTimestamp:     ts.Add(-2 * time.Second),
			SentAt:                ts.Add(-time.Second),
			ReceivedAt:            ts.Add(300 * time.Millisecond),
			UUIDTs:                ts.Add(time.Minute),
		}
		buf = append(buf, r)
		if len(buf) == cap(buf) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkParquetDecode decodes a 1M-row, 40-column Snappy file into
// segment messages ("decoded"), next to the ceiling: a plain walk over the
// pages of the same columns that touches every value and level and converts
// nothing ("pages"). Rows are read one row group after another on one
// goroutine, so the figures are per core.
func BenchmarkParquetDecode(b *testing.B) {
	rows, rowGroup := 1_000_000, 131_072
	if testing.Short() {
		rows, rowGroup = 100_000, 16_384
	}
	path := filepath.Join(b.TempDir(), "order_completed.parquet")
	writeBenchFile(b, path, rows, rowGroup)
	f := openLocal(b, path)
	o := objectFor(path, "order_completed", "")
	p, err := OpenParquet(context.Background(), f, o, Hint{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d rows, %d row groups, %d of %d columns read", rows, len(p.RowGroups()), len(p.plan.cols), len(p.pf.Schema().Columns()))

	var decoded, pages float64
	b.Run("decoded", func(b *testing.B) {
		decoded = measureRows(b, int64(rows), func() int64 {
			var n, sum int64
			for g := range p.RowGroups() {
				err := p.ReadRowGroup(context.Background(), g, DefaultBatchSize, func(_ int64, batch []segment.Message) error {
					for j := range batch {
						sum += int64(len(batch[j].DeviceID)) + batch[j].Timestamp.Micros
					}
					n += int64(len(batch))
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			benchSink = sum
			return n
		})
	})
	// Row groups on every core, as the pipeline runs them: the figure to
	// set against a multi-threaded scan such as DuckDB's.
	b.Run("decoded-parallel", func(b *testing.B) {
		measureRows(b, int64(rows), func() int64 {
			var wg sync.WaitGroup
			var n atomic.Int64
			next := atomic.Int64{}
			for range runtime.GOMAXPROCS(0) {
				wg.Go(func() {
					for g := int(next.Add(1) - 1); g < len(p.RowGroups()); g = int(next.Add(1) - 1) {
						err := p.ReadRowGroup(context.Background(), g, DefaultBatchSize, func(_ int64, batch []segment.Message) error {
							n.Add(int64(len(batch)))
							return nil
						})
						if err != nil {
							b.Error(err)
						}
					}
				})
			}
			wg.Wait()
			return n.Load()
		})
	})
	b.Run("pages", func(b *testing.B) {
		pages = measureRows(b, int64(rows), func() int64 { return plainPageRead(b, p) })
	})
	// The same columns through arrow-go's typed column chunk readers
	// (ReadBatch into typed slices and definition levels, no conversion):
	// the other candidate for the decoder, measured here for the choice.
	b.Run("arrow-columns", func(b *testing.B) {
		measureRows(b, int64(rows), func() int64 {
			osf, err := os.Open(path) // the arrow reader closes it
			if err != nil {
				b.Fatal(err)
			}
			return arrowColumnRead(b, osf, p)
		})
	})
	if pages > 0 {
		b.Logf("decoded %.2fM rows/s, plain page read %.2fM rows/s, ratio %.2f", decoded/1e6, pages/1e6, decoded/pages)
	}
}

var benchSink int64

// measureRows runs read b.N times and reports rows/s, bytes and
// allocations per row; it returns rows/s.
func measureRows(b *testing.B, want int64, read func() int64) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	var total int64
	for range b.N {
		n := read()
		if n != want {
			b.Fatalf("read %d rows, want %d", n, want)
		}
		total += n
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	rate := float64(total) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(total), "B/row")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(total), "allocs/row")
	return rate
}

// plainPageRead walks the pages of the planned columns with parquet-go's
// page API and touches every level and value without converting anything.
func plainPageRead(b *testing.B, p *ParquetFile) int64 {
	var rows, sum int64
	for g, rg := range p.pf.RowGroups() {
		chunks := rg.ColumnChunks()
		for k, c := range p.plan.cols {
			pages := chunks[c.leaf].Pages()
			for {
				page, err := pages.ReadPage()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				for _, d := range page.DefinitionLevels() {
					sum += int64(d)
				}
				data := page.Data()
				switch {
				case page.Dictionary() != nil:
					for _, x := range data.Int32() {
						sum += int64(x)
					}
				case c.kind == parquet.ByteArray:
					_, offs := data.ByteArray()
					for _, o := range offs {
						sum += int64(o)
					}
				case c.kind == parquet.Int64:
					for _, v := range data.Int64() {
						sum += v
					}
				case c.kind == parquet.Double:
					for _, v := range data.Double() {
						sum += int64(v)
					}
				case c.kind == parquet.Boolean:
					for _, v := range data.Boolean() {
						sum += int64(v)
					}
				}
				parquet.Release(page)
			}
			pages.Close()
			if k == 0 {
				rows += p.RowGroups()[g].Rows
			}
		}
	}
	benchSink = sum
	return rows
}

// arrowColumnRead reads the planned columns with arrow-go's column chunk
// readers, touching every value and level.
func arrowColumnRead(b *testing.B, r *os.File, p *ParquetFile) int64 {
	rdr, err := arrowfile.NewParquetReader(r)
	if err != nil {
		b.Fatal(err)
	}
	defer rdr.Close()
	const batch = 1024
	defs := make([]int16, batch)
	bas := make([]pqarrow.ByteArray, batch)
	i64 := make([]int64, batch)
	f64 := make([]float64, batch)
	bools := make([]bool, batch)
	var rows, sum int64
	for g := range rdr.NumRowGroups() {
		rg := rdr.RowGroup(g)
		for _, c := range p.plan.cols {
			cr, err := rg.Column(c.leaf)
			if err != nil {
				b.Fatal(err)
			}
			for {
				var n int64
				var nv int
				switch cr := cr.(type) {
				case *arrowfile.ByteArrayColumnChunkReader:
					n, nv, err = cr.ReadBatch(batch, bas, defs, nil)
					for _, v := range bas[:nv] {
						sum += int64(len(v))
					}
				case *arrowfile.Int64ColumnChunkReader:
					n, nv, err = cr.ReadBatch(batch, i64, defs, nil)
					for _, v := range i64[:nv] {
						sum += v
					}
				case *arrowfile.Float64ColumnChunkReader:
					n, nv, err = cr.ReadBatch(batch, f64, defs, nil)
					for _, v := range f64[:nv] {
						sum += int64(v)
					}
				case *arrowfile.BooleanColumnChunkReader:
					n, nv, err = cr.ReadBatch(batch, bools, defs, nil)
					for _, v := range bools[:nv] {
						if v {
							sum++
						}
					}
				default:
					b.Fatalf("column %s: reader %T", c.name, cr)
				}
				if err != nil {
					b.Fatal(err)
				}
				for _, d := range defs[:n] {
					sum += int64(d)
				}
				if n == 0 {
					break
				}
			}
		}
		rows += rg.NumRows()
	}
	benchSink = sum
	return rows
}
