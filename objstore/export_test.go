package objstore

import (
	"context"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// OpenAzureWith opens an az:// backend on container with the account and
// credential given instead of the environment's, so that a test can make a
// client with no credentials or with an endpoint that does not answer.
func OpenAzureWith(connString, account, endpoint string, credential func() (azcore.TokenCredential, error),
	credentialTimeout time.Duration, container string) (Backend, error) {
	cfg := azureConfig{connString: connString, account: account, accountVia: "the test", endpoint: endpoint,
		credential: credential, credentialTimeout: credentialTimeout}
	return newAzureBackend(cfg, container, "az://"+container, "")
}

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
