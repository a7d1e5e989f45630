package pipeline

import (
	"context"
	"fmt"
)

// ListState returns the names in st under prefix, sorted: the dead-letter
// parts a job stored, for instance, to find those no manifest lists. Both
// built-in stores can list; another StateStore gets an error.
func ListState(ctx context.Context, st StateStore, prefix string) ([]string, error) {
	l, ok := st.(stateLister)
	if !ok {
		return nil, fmt.Errorf("list %s: the state store cannot list", st.URI(prefix))
	}
	return l.ListKeys(ctx, prefix) // its errors name the folder or bucket
}
