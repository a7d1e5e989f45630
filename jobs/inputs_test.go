package jobs

import (
	"testing"

	"github.com/convertro-etl/convertro-etl/readers"
)

// TestEventTableOf: the event table an object belongs to, by the layouts'
// paths; a Segment Data Lakes source id's folder is no table.
func TestEventTableOf(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"dataset/order_completed/day=2024-01-01/hr=00/000000000000.parquet", "order_completed"},
		{"dataset/tracks/day=2024-01-01/hr=00/000000000000.parquet", ""},
		{"dataset/identifies/day=2024-01-01/hr=00/000000000000.parquet", ""},
		{"lake/track_order_completed/segment_type=track/day=2024-01-01/hr=00/part-00000.parquet", "order_completed"},
		{"lake/tracks/segment_type=track/day=2024-01-01/hr=00/part-00000.parquet", ""},
		{"segment-data/data/9VoQ2dMxVGu8ML4X5bkE1x/segment_type=order_completed/day=2024-01-01/hr=00/part-00000.parquet", "order_completed"},
		{"segment-data/data/9VoQ2dMxVGu8ML4X5bkE1x/segment_type=identify/day=2024-01-01/hr=00/part-00000.parquet", ""},
		{"segment-data/data/9VoQ2dMxVGu8ML4X5bkE1x/segment_type=page/day=2024-01-01/hr=00/part-00000.parquet", ""},
	} {
		if got := eventTableOf(readers.ParsePartition(tt.key)); got != tt.want {
			t.Errorf("eventTableOf(%s) = %q, want %q", tt.key, got, tt.want)
		}
	}
}
