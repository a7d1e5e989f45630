package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
)

func planObjects(n, rowGroups int) []Object {
	objs := make([]Object, n)
	for i := range objs {
		key := fmt.Sprintf("segment/day=2024-01-%02d/part-%03d.parquet", i%28+1, i)
		rgs := make([]int64, rowGroups)
		for j := range rgs {
			rgs[j] = int64(100 + i + j)
		}
		objs[i] = Object{URI: "gs://b/" + key, Key: key, Size: 1000, Version: strconv.Itoa(i + 1), RowGroups: rgs}
	}
	return objs
}

func TestBuildPlan(t *testing.T) {
	objs := []Object{
		{Key: "a", RowGroups: []int64{10, 20}},
		{Key: "b", RowGroups: nil},
		{Key: "c", RowGroups: []int64{5}, Skipped: "bad footer"},
		{Key: "d", RowGroups: []int64{0, 7}},
	}
	got := BuildPlan(objs)
	want := []Unit{{0, 0, 10}, {0, 1, 20}, {3, 0, 0}, {3, 1, 7}}
	if !slices.Equal(got, want) {
		t.Fatalf("BuildPlan = %v, want %v", got, want)
	}
	if n := PlanRows(got); n != 37 {
		t.Errorf("PlanRows = %d, want 37", n)
	}
}

func TestShardUnitsCoverEveryUnitOnce(t *testing.T) {
	objs := planObjects(40, 5)
	units := BuildPlan(objs)
	for _, n := range []int{1, 2, 3, 4, 7, 16} {
		seen := make(map[Unit]int)
		for i := range n {
			part := ShardUnits(units, objs, Shard{Index: i, Count: n})
			if n > 1 && len(part) == len(units) {
				t.Errorf("n=%d: shard %d holds every unit", n, i)
			}
			// Plan order is kept within a shard.
			if !slices.IsSortedFunc(part, func(a, b Unit) int {
				if a.Object != b.Object {
					return a.Object - b.Object
				}
				return a.RowGroup - b.RowGroup
			}) {
				t.Errorf("n=%d shard %d: units out of plan order", n, i)
			}
			for _, u := range part {
				seen[u]++
			}
		}
		for _, u := range units {
			if seen[u] != 1 {
				t.Errorf("n=%d: unit %v in %d shards, want 1", n, u, seen[u])
			}
		}
		if len(seen) != len(units) {
			t.Errorf("n=%d: shards hold %d distinct units, want %d", n, len(seen), len(units))
		}
	}
}

func TestShardUnitsStable(t *testing.T) {
	// A unit keeps its shard when other objects come and go: the hash is of
	// the key and row group, not of positions.
	objs := planObjects(30, 3)
	shard := Shard{Index: 1, Count: 4}
	before := map[string]bool{}
	for _, u := range ShardUnits(BuildPlan(objs), objs, shard) {
		before[fmt.Sprint(objs[u.Object].Key, u.RowGroup)] = true
	}
	fewer := slices.Concat(objs[:5], objs[12:]) // positions shift
	for _, u := range ShardUnits(BuildPlan(fewer), fewer, shard) {
		if !before[fmt.Sprint(fewer[u.Object].Key, u.RowGroup)] {
			t.Errorf("%s row group %d moved into shard %v", fewer[u.Object].Key, u.RowGroup, shard)
		}
	}
}

func TestShardFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		flag    string
		shards  int
		env     map[string]string
		want    Shard
		wantErr bool
	}{
		{name: "default", want: Shard{0, 1}},
		{name: "flag", flag: "2/5", want: Shard{2, 5}},
		{name: "flag with same shards", flag: "2/5", shards: 5, want: Shard{2, 5}},
		{name: "flag with other shards", flag: "2/5", shards: 4, wantErr: true},
		{name: "flag wins over env", flag: "1/2", env: map[string]string{"JOB_COMPLETION_INDEX": "0"}, want: Shard{1, 2}},
		{name: "flag index out of range", flag: "5/5", wantErr: true},
		{name: "flag negative", flag: "-1/5", wantErr: true},
		{name: "flag zero count", flag: "0/0", wantErr: true},
		{name: "flag malformed", flag: "3", wantErr: true},
		{name: "flag not numbers", flag: "a/b", wantErr: true},
		{name: "kubernetes", shards: 8, env: map[string]string{"JOB_COMPLETION_INDEX": "7"}, want: Shard{7, 8}},
		{name: "kubernetes without shards", env: map[string]string{"JOB_COMPLETION_INDEX": "0"}, wantErr: true},
		{name: "kubernetes index too big", shards: 3, env: map[string]string{"JOB_COMPLETION_INDEX": "3"}, wantErr: true},
		{name: "cloud run", env: map[string]string{"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "3"}, want: Shard{1, 3}},
		{name: "cloud run without count", env: map[string]string{"CLOUD_RUN_TASK_INDEX": "1"}, wantErr: true},
		{name: "cloud run other shards", shards: 2, env: map[string]string{"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "3"}, wantErr: true},
		{name: "shards without index", shards: 4, wantErr: true},
		{name: "shards 1 without index", shards: 1, want: Shard{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ShardFromEnv(tt.flag, tt.shards, func(k string) string { return tt.env[k] })
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidShard) {
					t.Fatalf("ShardFromEnv = %v, %v; want ErrInvalidShard", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ShardFromEnv = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
