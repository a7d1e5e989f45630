package pipeline

import (
	"context"
	"fmt"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// StateStore keeps the small objects of a job's state (manifests, reports,
// the layout) in the state location. *objstore.Store is one, for every
// backend; tests wrap it to inject failures. Names are relative,
// slash-separated and never contain "..".
//
// Versions are opaque tokens: every successful Write produces one that no
// earlier version of the object had, and Read returns the version of
// exactly the bytes it returns. That makes Write with objstore.IfVersion a
// compare-and-swap, which is what fences a second runner out of a job.
// Errors are objstore's kinds: objstore.ErrNotFound, objstore.ErrPrecondition.
type StateStore interface {
	// Read returns the object and its version.
	Read(ctx context.Context, name string) (data []byte, version string, err error)
	// Write replaces the object as a whole (readers see the old or the new
	// bytes, never a mix) if pre holds.
	Write(ctx context.Context, name string, data []byte, pre objstore.Precondition) (version string, err error)
	// Delete removes the object; deleting an absent object is not an error.
	Delete(ctx context.Context, name string) error
	// URI names the object for messages.
	URI(name string) string
}

// stateLister is the optional extra that ListManifests needs; *objstore.Store
// has it.
type stateLister interface {
	// ListKeys returns the names under prefix, sorted.
	ListKeys(ctx context.Context, prefix string) ([]string, error)
}

// FileStateStore is the optional extra for state objects too big to hold in
// memory (an audience snapshot of millions of rows): they move between the
// store and a local file by streaming. *objstore.Store has it.
type FileStateStore interface {
	StateStore
	// ReadFile copies the object to the local file path (replacing it) and
	// returns the object's version.
	ReadFile(ctx context.Context, name, path string) (version string, err error)
	// WriteFile stores the local file path as the object, with Write's
	// all-or-nothing replacement and precondition.
	WriteFile(ctx context.Context, name, path string, pre objstore.Precondition) (version string, err error)
}

var (
	_ FileStateStore = (*objstore.Store)(nil)
	_ stateLister    = (*objstore.Store)(nil)
)

// OpenState opens the state location uri (a local folder, created on first
// write, or a prefix in any bucket objstore serves) and removes the
// temporary files that writes killed midway left in a local one.
func OpenState(ctx context.Context, uri string) (*objstore.Store, error) {
	st, err := objstore.Open(ctx, uri)
	if err != nil {
		return nil, err // names the location
	}
	if err := st.RemoveOrphanTemps(ctx); err != nil {
		return nil, fmt.Errorf("open state %s: %w", uri, err)
	}
	return st, nil
}
