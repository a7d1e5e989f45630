package pipeline

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// ErrInvalidShard reports a shard selection that cannot be used: a malformed
// --shard, an index out of range, or an index without a count.
var ErrInvalidShard = errors.New("invalid shard")

// ShardUnits keeps the units that belong to shard s, in plan order: the
// units of the objects s owns (Owns).
func ShardUnits(units []Unit, objs []Object, s Shard) []Unit {
	if s.Count <= 1 {
		return units
	}
	out := make([]Unit, 0, len(units)/s.Count+1)
	for _, u := range units {
		if s.Owns(objs[u.Object].Key) {
			out = append(out, u)
		}
	}
	return out
}

// Owns reports whether the object with key (its path below the source
// root) belongs to shard s. An object's shard is a hash of its key alone,
// known from the listing: a shard opens only its own objects' footers, an
// object stays in the same shard when others are added to or removed from
// the listing, and every object falls in exactly one of the shards
// 0..s.Count-1, with all its row groups.
func (s Shard) Owns(key string) bool {
	return s.Count <= 1 || shardOf(key, s.Count) == s.Index
}

func shardOf(key string, count int) int {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64() % uint64(count))
}

// ShardFromEnv decides which shard this process runs, from, in order:
// the --shard i/n flag; JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) with
// the count from --shards; CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT
// (Cloud Run Jobs). With none of them it is 0/1. env is os.Getenv in
// production and a map lookup in tests.
func ShardFromEnv(flagShard string, shardsFlag int, env func(string) string) (Shard, error) {
	if flagShard != "" {
		s, err := parseShard(flagShard)
		if err != nil {
			return Shard{}, err
		}
		if shardsFlag > 0 && shardsFlag != s.Count {
			return Shard{}, fmt.Errorf("--shard %s with --shards %d: %w", flagShard, shardsFlag, ErrInvalidShard)
		}
		return s, nil
	}
	if v := env("JOB_COMPLETION_INDEX"); v != "" {
		if shardsFlag < 1 {
			return Shard{}, fmt.Errorf("JOB_COMPLETION_INDEX=%s needs --shards n (the Indexed Job's completions): %w", v, ErrInvalidShard)
		}
		return shardFrom("JOB_COMPLETION_INDEX", v, strconv.Itoa(shardsFlag))
	}
	if v := env("CLOUD_RUN_TASK_INDEX"); v != "" {
		n := env("CLOUD_RUN_TASK_COUNT")
		if n == "" {
			return Shard{}, fmt.Errorf("CLOUD_RUN_TASK_INDEX=%s without CLOUD_RUN_TASK_COUNT: %w", v, ErrInvalidShard)
		}
		if shardsFlag > 0 && strconv.Itoa(shardsFlag) != n {
			return Shard{}, fmt.Errorf("CLOUD_RUN_TASK_COUNT=%s with --shards %d: %w", n, shardsFlag, ErrInvalidShard)
		}
		return shardFrom("CLOUD_RUN_TASK_INDEX", v, n)
	}
	if shardsFlag > 1 {
		return Shard{}, fmt.Errorf("--shards %d needs --shard i/n or JOB_COMPLETION_INDEX: %w", shardsFlag, ErrInvalidShard)
	}
	return Shard{Index: 0, Count: 1}, nil
}

func parseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("--shard %q: want i/n, such as 0/4: %w", s, ErrInvalidShard)
	}
	return shardFrom("--shard", i, n)
}

func shardFrom(what, index, count string) (Shard, error) {
	i, err1 := strconv.Atoi(strings.TrimSpace(index))
	n, err2 := strconv.Atoi(strings.TrimSpace(count))
	if err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%s %s of %s: want 0 <= index < count: %w", what, index, count, ErrInvalidShard)
	}
	return Shard{Index: i, Count: n}, nil
}
