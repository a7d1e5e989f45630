package readers

import (
	"encoding/binary"
	"errors"
	"math/bits"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Pages of huge values. The Parquet library reads a page whole into a
// pooled buffer of the next size class (up to 1.5 times the page), and
// decodes it from there: a 50 MiB value costs about 75 MiB while its page
// is read, although the cursor keeps only its first MaxValueBytes. For an
// uncompressed page of text longer than hugePageBytes the guard does the
// cutting first: it reads the page's values through a window, and when one
// is longer than MaxValueBytes, hands out in place of the page one holding
// the same rows with each value cut to its first MaxValueBytes bytes
// (PLAIN encoded), which the library reads instead. The rows decode to what
// they would have decoded to; the long values' bytes are never read.
//
// A compressed page cannot be cut before it is decompressed, which the
// library does whole: such a page still costs its compressed and its
// decompressed size.

// hugePageBytes is the size past which an uncompressed page of text is
// looked into: writers close pages at about 1 MiB, so a page beyond this
// holds long values.
const hugePageBytes = 4 << 20

// maxCutPage bounds the page handed out in place of a huge one; a page
// whose values, cut, are still longer is left to the library.
const maxCutPage = 4 << 20

// errNoCut says a huge page is left as it is: an encoding not handled, or
// bytes that do not parse (the library then reports them).
var errNoCut = errors.New("page not cut")

// cutPage returns the page (header and body) to hand out in place of the
// page whose header hdr (as handed out, long statistics left out) is
// followed by body bytes from file offset at, or errNoCut. Other errors are
// read failures.
func (g *pageGuard) cutPage(hdr []byte, at, body int64) ([]byte, error) {
	var h format.PageHeader
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), hdr, &h); err != nil {
		return nil, errNoCut
	}
	w := compactWalk{r: g.r, start: at, pos: at, end: at + body, window: readBufferSize}
	var levels int64 // bytes of levels before the values
	var enc format.Encoding
	count := int64(-1) // values, when the page says (a dictionary)
	switch {
	case h.Type == format.DataPage && h.DataPageHeader.Valid:
		v := &h.DataPageHeader.V
		enc = v.Encoding
		if g.maxDef > 0 {
			switch v.DefinitionLevelEncoding {
			case format.RLE:
				var n [4]byte
				for i := range n {
					c, err := w.byte()
					if err != nil {
						return nil, readOr(err)
					}
					n[i] = c
				}
				levels = 4 + int64(binary.LittleEndian.Uint32(n[:]))
			case format.BitPacked:
				levels = (int64(v.NumValues)*int64(bits.Len8(g.maxDef)) + 7) / 8
			default:
				return nil, errNoCut
			}
		}
	case h.Type == format.DataPageV2 && h.DataPageHeaderV2.Valid:
		v := &h.DataPageHeaderV2.V
		enc = v.Encoding
		levels = int64(v.RepetitionLevelsByteLength) + int64(v.DefinitionLevelsByteLength)
	case h.Type == format.DictionaryPage && h.DictionaryPageHeader.Valid:
		enc = format.Plain
		count = int64(h.DictionaryPageHeader.V.NumValues)
	default:
		return nil, errNoCut
	}
	if levels < 0 || levels > body || levels > maxCutPage {
		return nil, errNoCut
	}
	w.pos = at + levels
	out := make([]byte, levels, max(levels, 64<<10))
	if levels > 0 {
		if n, err := g.r.ReadAt(out, at); int64(n) < levels {
			return nil, &errWalkRead{err}
		}
	}
	var cut bool
	var err error
	switch enc {
	case format.Plain, format.PlainDictionary:
		out, cut, err = cutPlain(&w, out, count)
	case format.DeltaLengthByteArray:
		out, cut, err = cutDeltaLength(&w, out, g.rows)
	case format.DeltaByteArray:
		out, cut, err = cutDeltaByteArray(&w, out, g.rows)
	default:
		return nil, errNoCut
	}
	if err != nil || !cut {
		return nil, orNoCut(err)
	}
	h.CompressedPageSize = int32(len(out))
	h.UncompressedPageSize = int32(len(out))
	h.CRC = 0
	switch {
	case h.DataPageHeader.Valid:
		h.DataPageHeader.V.Encoding = format.Plain
	case h.DataPageHeaderV2.Valid:
		h.DataPageHeaderV2.V.Encoding = format.Plain
	case h.DictionaryPageHeader.Valid:
		h.DictionaryPageHeader.V.Encoding = format.Plain
	}
	nh, merr := thrift.Marshal(new(thrift.CompactProtocol), &h)
	if merr != nil {
		return nil, errNoCut
	}
	return append(nh, out...), nil
}

// orNoCut is err, or errNoCut for nil: nothing was cut.
func orNoCut(err error) error {
	if err == nil {
		return errNoCut
	}
	return err
}

// readOr keeps a read failure and makes any other walk error errNoCut.
func readOr(err error) error {
	var re *errWalkRead
	if errors.As(err, &re) {
		return err
	}
	return errNoCut
}

// appendCut appends a PLAIN byte array of the first MaxValueBytes of the n
// bytes at w.pos and steps over them; cut says some were left.
func appendCut(w *compactWalk, out []byte, n int64) ([]byte, bool, error) {
	if n < 0 || n > w.left() {
		return nil, false, errNoCut
	}
	k := min(n, MaxValueBytes)
	if int64(len(out))+4+k > maxCutPage {
		return nil, false, errNoCut
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(k))
	b, err := w.take(k)
	if err != nil {
		return nil, false, readOr(err)
	}
	out = append(out, b...)
	w.pos += n - k
	return out, n > k, nil
}

// cutPlain copies PLAIN byte arrays up to the end of w (or count of them,
// when count >= 0), each cut to MaxValueBytes.
func cutPlain(w *compactWalk, out []byte, count int64) ([]byte, bool, error) {
	some := false
	for i := int64(0); count < 0 && w.left() > 0 || i < count; i++ {
		var n [4]byte
		for j := range n {
			c, err := w.byte()
			if err != nil {
				return nil, false, readOr(err)
			}
			n[j] = c
		}
		var cut bool
		var err error
		if out, cut, err = appendCut(w, out, int64(binary.LittleEndian.Uint32(n[:]))); err != nil {
			return nil, false, err
		}
		some = some || cut
	}
	return out, some, nil
}

// cutDeltaLength copies DELTA_LENGTH_BYTE_ARRAY values (their lengths
// DELTA_BINARY_PACKED, then their bytes one after the other) as PLAIN
// byte arrays, each cut to MaxValueBytes. A page holds at most rows values.
func cutDeltaLength(w *compactWalk, out []byte, rows int64) ([]byte, bool, error) {
	lens, err := deltaBinaryPacked(w, rows)
	if err != nil {
		return nil, false, err
	}
	some := false
	for _, n := range lens {
		var cut bool
		if out, cut, err = appendCut(w, out, n); err != nil {
			return nil, false, err
		}
		some = some || cut
	}
	return out, some, nil
}

// deltaBinaryPacked decodes at most max 32-bit integers encoded
// DELTA_BINARY_PACKED at w.pos, leaving w.pos after them: a header (block
// size, miniblocks per block, count, first value), then blocks of a minimum
// delta, one bit width per miniblock and the miniblocks' deltas bit-packed
// little-endian. Miniblocks past the last value are not stored.
func deltaBinaryPacked(w *compactWalk, max int64) ([]int64, error) {
	var hd [3]uint64
	for i := range hd {
		v, err := w.uvarint()
		if err != nil {
			return nil, readOr(err)
		}
		hd[i] = v
	}
	block, minis, count := hd[0], hd[1], hd[2]
	first, err := w.zigzag()
	if err != nil {
		return nil, readOr(err)
	}
	if block == 0 || block%128 != 0 || block > 1<<16 || minis == 0 || block%minis != 0 || (block/minis)%32 != 0 || count > uint64(max) {
		return nil, errNoCut
	}
	per := int(block / minis)
	vals := make([]int64, 0, count)
	if count == 0 {
		return vals, nil
	}
	vals = append(vals, first)
	prev := first
	widths := make([]byte, minis)
	for uint64(len(vals)) < count {
		minDelta, err := w.zigzag()
		if err != nil {
			return nil, readOr(err)
		}
		for i := range widths {
			if widths[i], err = w.byte(); err != nil {
				return nil, readOr(err)
			}
		}
		for _, bw := range widths {
			if uint64(len(vals)) >= count {
				break
			}
			if bw > 32 {
				return nil, errNoCut
			}
			packed, err := w.take(int64(per) * int64(bw) / 8)
			if err != nil {
				return nil, readOr(err)
			}
			var acc uint64
			var have uint
			j := 0
			for range per {
				for have < uint(bw) {
					acc |= uint64(packed[j]) << have
					j++
					have += 8
				}
				d := acc & (1<<bw - 1)
				acc >>= bw
				have -= uint(bw)
				if uint64(len(vals)) < count {
					// 32-bit arithmetic, as the lengths were encoded.
					prev = int64(int32(prev + minDelta + int64(d)))
					vals = append(vals, prev)
				}
			}
		}
	}
	return vals, nil
}

// cutDeltaByteArray copies DELTA_BYTE_ARRAY values (the length of the
// prefix each shares with the value before it, DELTA_BINARY_PACKED, then
// the rest of each, DELTA_LENGTH_BYTE_ARRAY) as PLAIN byte arrays, each cut
// to MaxValueBytes: the first MaxValueBytes of a value come from those of
// the value before it and its own rest.
func cutDeltaByteArray(w *compactWalk, out []byte, rows int64) ([]byte, bool, error) {
	prefixes, err := deltaBinaryPacked(w, rows)
	if err != nil {
		return nil, false, err
	}
	suffixes, err := deltaBinaryPacked(w, rows)
	if err != nil {
		return nil, false, err
	}
	if len(prefixes) != len(suffixes) {
		return nil, false, errNoCut
	}
	some := false
	var prev []byte // the first MaxValueBytes of the value before
	var cur []byte
	for i, p := range prefixes {
		n := suffixes[i]
		if p < 0 || n < 0 || n > w.left() || p > int64(len(prev)) && len(prev) < MaxValueBytes {
			return nil, false, errNoCut
		}
		cur = append(cur[:0], prev[:min(p, int64(len(prev)))]...)
		k := min(n, MaxValueBytes-int64(len(cur)))
		b, err := w.take(k)
		if err != nil {
			return nil, false, readOr(err)
		}
		cur = append(cur, b...)
		w.pos += n - k
		if int64(len(out))+4+int64(len(cur)) > maxCutPage {
			return nil, false, errNoCut
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(cur)))
		out = append(out, cur...)
		some = some || p+n > MaxValueBytes
		prev, cur = cur, prev
	}
	return out, some, nil
}
