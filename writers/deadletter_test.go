package writers

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDeadLettersRoundTrip(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	rows := []DeadLetter{
		{MessageID: "m1", Object: "gs://b/tracks/x.parquet", RowGroup: 2, Row: 17,
			URL: "https://sp1.convertro.com/api/hit/acme/1/?sid=d&typ=sale&val=1&eid=o&ts=1", Status: 400,
			Response: "bad sid", Reason: "400 Bad Request: bad sid", Attempts: 1, Time: at},
		{MessageID: "m2", Object: "/data/identifies/y.parquet", Row: 0, URL: "u", Status: 404, Attempts: 3, Time: at.Add(time.Second),
			Response: strings.Repeat("é", 512)},
	}
	data, err := DeadLetterFile(rows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeDeadLetters("part.parquet", data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, rows)
	}
	if _, err := DecodeDeadLetters("junk.parquet", []byte("not parquet")); err == nil || !strings.Contains(err.Error(), "junk.parquet") {
		t.Errorf("reading junk: err = %v, want one naming the file", err)
	}
}

func TestMergeDeadLettersDropsRepeats(t *testing.T) {
	dl := func(obj string, row int64, url string) DeadLetter {
		return DeadLetter{Object: obj, Row: row, URL: url, Reason: fmt.Sprint(row)}
	}
	first := []DeadLetter{dl("b", 1, "u1"), dl("a", 5, "u1")}
	resumed := []DeadLetter{dl("a", 5, "u1"), dl("a", 5, "u2"), dl("b", 0, "u1")}
	got := MergeDeadLetters(first, resumed)
	want := []DeadLetter{dl("a", 5, "u1"), dl("a", 5, "u2"), dl("b", 0, "u1"), dl("b", 1, "u1")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merge:\n got %+v\nwant %+v", got, want)
	}
}
