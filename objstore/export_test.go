package objstore

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The S3 tests make clients from a configuration of their own: the
// process's one client reads the environment once.
var NewS3Client = newS3Client

// NewS3Backend is the S3 backend of c rooted at uri.
func NewS3Backend(c *s3.Client, uri string) (Backend, error) {
	loc, err := Parse(uri)
	if err != nil {
		return nil, err
	}
	return newS3Backend(c, loc), nil
}

// S3Err maps err, an S3 call's failure, as the backend does.
func S3Err(err error) error {
	return (&s3Backend{}).err(context.Background(), err)
}

// IsTransient reports whether the Store retries err.
var IsTransient = transient
