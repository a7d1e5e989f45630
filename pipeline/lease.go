package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

var (
	// ErrLeaseHeld: another live run holds the shard's lease. Nothing was
	// written; run again later (exit 3).
	ErrLeaseHeld = errors.New("another live run holds the lease")
	// ErrLeaseLost: another process took the lease over; this one must stop
	// at once without writing anything else (exit 1).
	ErrLeaseLost = errors.New("lease lost: another process owns this job now")
)

// DefaultLeaseTTL is how long a lease lasts past its last renewal. A run
// renews it at every Commit, about once a second.
const DefaultLeaseTTL = 30 * time.Second

// Lease says which process owns a shard and until when. A lease whose
// Expires has passed, or is zero (released), is free.
type Lease struct {
	Owner   string    `json:"owner"` // unique per process and checkpoint: host, pid and a random part
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Expires time.Time `json:"expires"`
	// PIDNS is the holder's PID namespace (Linux), so that the same-host
	// liveness check never tests a PID in another container's namespace
	// that happens to share the host name.
	PIDNS string `json:"pid_ns,omitempty"`
}

// NewLease describes this process as a lease owner, with a fresh random
// Owner id; Expires is set by the Checkpoint.
func NewLease() Lease {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	var b [6]byte
	rand.Read(b[:])
	pid := os.Getpid()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return Lease{
		Owner: host + "/" + strconv.Itoa(pid) + "/" + hex.EncodeToString(b[:]),
		Host:  host, PID: pid, PIDNS: ns,
	}
}

func (l Lease) String() string {
	return fmt.Sprintf("owner %s, host %s pid %d", l.Owner, l.Host, l.PID)
}

// liveOwners holds the owners of this process's checkpoints between Begin
// and Finish. A lease naming this host and this very PID but an owner not in
// here was left by an earlier process that had the same PID (a restarted
// container's PID 1), so it is taken over at once.
var liveOwners sync.Map

// LeaseError is ErrLeaseHeld or ErrLeaseLost with who holds the lease now.
type LeaseError struct {
	Op     string // "open", "begin", "commit", "finish"
	URI    string // the manifest
	Holder Lease  // zero if it could not be read
	Err    error  // ErrLeaseHeld or ErrLeaseLost
}

func (e *LeaseError) Error() string {
	who := "another run"
	if e.Holder.Owner != "" {
		who = fmt.Sprintf("another run (host %s pid %d, owner %s)", e.Holder.Host, e.Holder.PID, e.Holder.Owner)
	}
	if errors.Is(e.Err, ErrLeaseLost) {
		return fmt.Sprintf("%s manifest %s: lease lost: %s owns this job now; stopping without writing", e.Op, e.URI, who)
	}
	until := ""
	if !e.Holder.Expires.IsZero() {
		until = " until " + e.Holder.Expires.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s manifest %s: %s holds the lease%s; run again later", e.Op, e.URI, who, until)
}

func (e *LeaseError) Unwrap() error { return e.Err }

// Checkpoint writes one shard's manifest while holding its lease. It is
// owned by one goroutine (the checkpointer): its methods are not safe for
// concurrent use, and the caller changes Manifest() only between calls.
//
// Every write is conditional on the generation of the previous one, so a
// process whose lease was taken over cannot overwrite its successor's
// manifest: its next Commit gets ErrLeaseLost and writes nothing. Each
// backend's conditional write does this (objstore.IfVersion).
type Checkpoint struct {
	st    StateStore
	shard Shard
	name  string
	owner Lease
	now   func() time.Time
	ttl   time.Duration

	version  string    // version of the manifest as last read or written; "" = none
	prev     Lease     // the lease found at open
	m        *Manifest // nil until Begin
	lost     bool
	finished bool
}

// OpenCheckpoint checks that the state's job is split into shard.Count
// shards (ErrShardLayout otherwise: LayoutName records the count, written
// by the first Begin), reads shard's manifest from st (nil Manifest if the
// shard never ran) and checks that the lease is free for owner (a zero Lease means
// NewLease()). A lease is free when it is owner's, expired or released, or
// held by a process on this host that is no longer running; otherwise the
// error is a *LeaseError wrapping ErrLeaseHeld that names the holder and
// the expiry. now is the clock (nil: time.Now) and ttl the lease duration
// (0: DefaultLeaseTTL).
//
// Opening writes nothing; Begin takes the lease.
func OpenCheckpoint(ctx context.Context, st StateStore, shard Shard, owner Lease, now func() time.Time, ttl time.Duration) (*Checkpoint, *Manifest, error) {
	if !shard.valid() {
		return nil, nil, fmt.Errorf("open checkpoint: shard %s: %w", shard, ErrInvalidShard)
	}
	if owner.Owner == "" {
		owner = NewLease()
	}
	if now == nil {
		now = time.Now
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	c := &Checkpoint{st: st, shard: shard, name: ManifestName(shard), owner: owner, now: now, ttl: ttl}
	if err := checkLayout(ctx, st, shard); err != nil {
		return nil, nil, err
	}
	data, gen, err := st.Read(ctx, c.name)
	if errors.Is(err, objstore.ErrNotFound) {
		return c, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open checkpoint: %w", err)
	}
	m, err := decodeManifest(c.uri(), data)
	if err != nil {
		return nil, nil, err
	}
	if err := loadPlan(ctx, st, m); err != nil {
		return nil, nil, err
	}
	if m.Shard != shard {
		return nil, nil, fmt.Errorf("decode manifest %s: %w: it holds shard %s", c.uri(), ErrBadManifest, m.Shard)
	}
	if held(m.Lease, owner, now()) {
		return nil, nil, &LeaseError{Op: "open", URI: c.uri(), Holder: m.Lease, Err: ErrLeaseHeld}
	}
	c.version, c.prev = gen, m.Lease
	return c, m, nil
}

// held reports whether l keeps owner out at time now.
func held(l, owner Lease, now time.Time) bool {
	if l.Owner == "" || l.Owner == owner.Owner || !now.Before(l.Expires) {
		return false
	}
	sameHost := l.Host == owner.Host && (l.PIDNS == "" || owner.PIDNS == "" || l.PIDNS == owner.PIDNS)
	if !sameHost || l.PID <= 0 {
		return true // a remote holder's life cannot be checked: wait for the expiry
	}
	if l.PID == os.Getpid() {
		_, live := liveOwners.Load(l.Owner)
		return live
	}
	return processRunning(l.PID)
}

// PreviousLease is the lease the manifest held at open (zero if none): the
// run this one resumes, for logs.
func (c *Checkpoint) PreviousLease() Lease { return c.prev }

// Owner is the lease this checkpoint holds, with its current expiry.
func (c *Checkpoint) Owner() Lease {
	l := c.owner
	if c.m != nil {
		l.Expires = c.m.Lease.Expires
	}
	return l
}

// Manifest is the manifest being checkpointed (nil before Begin). The
// checkpointer goroutine updates it in place between calls.
func (c *Checkpoint) Manifest() *Manifest { return c.m }

// Begin takes the lease and writes m as the shard's manifest: the resumed
// manifest from OpenCheckpoint, or a new one. It sets m's version, shard,
// status (running) and lease, counts the run and stamps the times. The
// write is conditional on the manifest OpenCheckpoint saw, so of two
// processes racing for the same shard exactly one wins; the other gets a
// *LeaseError wrapping ErrLeaseHeld.
func (c *Checkpoint) Begin(ctx context.Context, m *Manifest) error {
	switch {
	case m == nil:
		return fmt.Errorf("begin manifest %s: no manifest", c.uri())
	case c.m != nil:
		return fmt.Errorf("begin manifest %s: already begun", c.uri())
	}
	if err := recordLayout(ctx, c.st, c.shard); err != nil {
		return err
	}
	t := c.now()
	m.Version = ManifestVersion
	m.Shard = c.shard
	// The plan first: a manifest never names a plan that is not stored.
	stale, err := writePlan(ctx, c.st, m)
	if err != nil {
		return fmt.Errorf("begin manifest %s: %w", c.uri(), err)
	}
	m.Status = StatusRunning
	m.Runs++
	if m.Created.IsZero() {
		m.Created = t
	}
	m.Updated = t
	m.Lease = c.owner
	m.Lease.Expires = t.Add(c.ttl)
	c.m = m
	// Registered before the write: a manifest naming this owner must never
	// be readable while the owner looks like an earlier process's.
	liveOwners.Store(c.owner.Owner, struct{}{})
	if err := c.write(ctx, "begin", ErrLeaseHeld); err != nil {
		liveOwners.Delete(c.owner.Owner)
		c.m = nil
		m.Runs--
		return err
	}
	// Cleaning up is best effort and must not hold the run's start: a
	// store that hangs would otherwise keep the first commit, which renews
	// the lease, from coming before the lease runs out.
	sweep, cancel := context.WithTimeout(ctx, c.ttl/4)
	defer cancel()
	dropOrphanParts(sweep, c.st, m, stale)
	return nil
}

// Commit renews the lease and writes the manifest as it is now. A
// *LeaseError wrapping ErrLeaseLost means another process took the shard
// over: nothing was written, and the caller must stop at once; every later
// call fails the same way.
//
// Commit does not pace itself: GCS accepts about one write per second to an
// object, so the caller commits at most once a second.
func (c *Checkpoint) Commit(ctx context.Context) error {
	if err := c.usable("commit"); err != nil {
		return err
	}
	t := c.now()
	c.m.Updated = t
	c.m.Lease.Expires = t.Add(c.ttl)
	return c.write(ctx, "commit", ErrLeaseLost)
}

// Finish writes the final manifest with status (StatusFinished,
// StatusFailed or StatusStopped) and releases the lease, so the next run
// starts at once. After a cancellation, call it with a context that is not
// cancelled (context.WithoutCancel plus a timeout): the last progress must
// still be written.
func (c *Checkpoint) Finish(ctx context.Context, status string) error {
	if err := c.usable("finish"); err != nil {
		return err
	}
	c.m.Status = status
	c.m.Updated = c.now()
	c.m.Lease.Expires = time.Time{}
	if err := c.write(ctx, "finish", ErrLeaseLost); err != nil {
		return err
	}
	c.finished = true
	liveOwners.Delete(c.owner.Owner)
	return nil
}

func (c *Checkpoint) usable(op string) error {
	switch {
	case c.m == nil:
		return fmt.Errorf("%s manifest %s: not begun", op, c.uri())
	case c.finished:
		return fmt.Errorf("%s manifest %s: already finished", op, c.uri())
	case c.lost:
		return &LeaseError{Op: op, URI: c.uri(), Err: ErrLeaseLost}
	}
	return nil
}

// write writes c.m conditional on c.version; a failed precondition becomes a
// *LeaseError wrapping kind.
func (c *Checkpoint) write(ctx context.Context, op string, kind error) error {
	data, err := json.Marshal(storedManifest(c.m))
	if err != nil {
		return fmt.Errorf("%s manifest %s: %w", op, c.uri(), err)
	}
	// The store retries a transient failure (a 429 or 503 under load, a
	// reset connection) until ctx's deadline: at most one lease duration,
	// after which a successor may own the shard anyway.
	ctx, cancel := context.WithTimeout(ctx, c.ttl)
	defer cancel()
	version, err := c.st.Write(ctx, c.name, data, objstore.IfVersion(c.version))
	if err == nil {
		c.version = version
		return nil
	}
	if !errors.Is(err, objstore.ErrPrecondition) {
		return fmt.Errorf("%s manifest: %w", op, err)
	}
	// The client retries a write whose answer was lost; the retry then
	// fails its precondition against our own first attempt. Our bytes are
	// unique (owner id and a nanosecond timestamp), so finding them means
	// the write landed.
	cur, curGen, rerr := c.st.Read(ctx, c.name)
	if rerr == nil && bytes.Equal(cur, data) {
		c.version = curGen
		return nil
	}
	lerr := &LeaseError{Op: op, URI: c.uri(), Err: kind}
	if rerr == nil {
		var other Manifest
		if json.Unmarshal(cur, &other) == nil {
			lerr.Holder = other.Lease
		}
	}
	if kind == ErrLeaseLost {
		c.lost = true
		liveOwners.Delete(c.owner.Owner)
	}
	return lerr
}

func (c *Checkpoint) uri() string { return c.st.URI(c.name) }

// LeaseHeld reports whether l, read from a manifest, still keeps other
// processes out at now: it names an owner, has not expired, and is not
// held by a process on this host that is gone. A manifest whose status is
// "running" without a held lease was left by a run that died.
func LeaseHeld(l Lease, now time.Time) bool { return held(l, NewLease(), now) }
