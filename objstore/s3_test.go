package objstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

// An ETag is the MD5 of the bytes on Amazon S3 as on the emulator: the
// same bytes written again keep their version.
func TestS3Conformance(t *testing.T) {
	objstoretest.RunWith(t, objstoretest.Options{ContentVersions: true},
		func(t *testing.T) string { return objstoretest.S3(t) + "/some/prefix" })
}

// unsetenv unsets k for the test, restoring it afterwards.
func unsetenv(t *testing.T, keys ...string) {
	for _, k := range keys {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// isolateAWS leaves the AWS SDK nothing to find but what the test sets:
// no credentials, profile, role or endpoint.
func isolateAWS(t *testing.T) {
	unsetenv(t, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
		"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_REGION", "us-east-1")
}

// silentServer accepts connections and never answers them: an instance
// metadata service that is there but hangs.
func silentServer(t *testing.T) (addr string, accepted *atomic.Int32) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), accepted
}

// With no credentials anywhere, the chain ends at the instance metadata
// service; one that never answers must not hold the client: it fails in
// seconds, saying what provides credentials.
func TestS3MissingCredentialsFailFast(t *testing.T) {
	isolateAWS(t)
	imds, asked := silentServer(t)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"+imds)
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = objstore.NewS3Client(ctx, cfg)
	el := time.Since(start)
	if err == nil {
		t.Fatal("a client was made with no credentials")
	}
	if el >= 10*time.Second {
		t.Fatalf("no credentials reported after %s, want under 10 s: %v", el, err)
	}
	if asked.Load() == 0 {
		t.Fatalf("the instance metadata service was never asked, so its bound is untested: %v", err)
	}
	for _, fix := range []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "aws sso login"} {
		if !strings.Contains(err.Error(), fix) {
			t.Errorf("the error does not name %q: %v", fix, err)
		}
	}
	t.Logf("after %s: %v", el.Round(time.Millisecond), err)
}

// An endpoint that refuses connections is reported when the client is
// made, and one that dies later on the call that finds it: both as an
// *UnreachableError that names it and the setting to correct.
func TestS3UnreachableEndpoint(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	ctx := context.Background()
	check := func(what string, err error, endpoint string) {
		t.Helper()
		var ue *objstore.UnreachableError
		if !errors.As(err, &ue) {
			t.Fatalf("%s: %v, want an *objstore.UnreachableError", what, err)
		}
		if !strings.Contains(ue.Server, "S3 endpoint") || ue.Endpoint != endpoint || !strings.Contains(err.Error(), "AWS_ENDPOINT_URL_S3") {
			t.Fatalf("%s: server %q endpoint %q, message %q; want the S3 endpoint %s and AWS_ENDPOINT_URL_S3 named", what, ue.Server, ue.Endpoint, err, endpoint)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	t.Setenv("AWS_ENDPOINT_URL_S3", endpoint)
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = objstore.NewS3Client(ctx, cfg)
	check("client for a closed port", err, endpoint)

	// Alive when the client is made, gone when it is used.
	if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	endpoint = "http://" + l.Addr().String()
	t.Setenv("AWS_ENDPOINT_URL_S3", endpoint)
	if cfg, err = config.LoadDefaultConfig(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := objstore.NewS3Client(ctx, cfg)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewS3Backend(c, "s3://bucket/prefix")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Stat(ctx, "state.json")
	check("Stat after the endpoint went away", err, endpoint)
	t.Logf("%v", err)
}

// Put takes any reader: one the SDK cannot seek is copied first, in
// memory when small and through a temporary file when large.
func TestS3PutUnseekable(t *testing.T) {
	ctx := context.Background()
	s, err := objstore.Open(ctx, objstoretest.S3(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{3, 17 << 20} {
		data := make([]byte, n)
		rand.Read(data)
		key := fmt.Sprintf("unseekable-%d", n)
		r := struct{ io.Reader }{bytes.NewReader(data)} // hides Seek
		v, err := s.Backend().Put(ctx, key, r, int64(n), objstore.IfAbsent)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, gv, err := s.Read(ctx, key)
		if err != nil || gv != v || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: read back %d bytes at version %q (put gave %q), %v", n, len(got), gv, v, err)
		}
	}
}

// s3Answer is a server's error answer as the SDK returns it.
func s3Answer(status int, code string) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}},
		Err:      &smithy.GenericAPIError{Code: code, Message: "from the test"},
	}}
}

// The answers the emulator does not give on demand map to the kinds too.
func TestS3ErrorKinds(t *testing.T) {
	for _, c := range []struct {
		status          int
		code            string
		notFound, pre   bool
		transient       bool
		namesCredential bool
	}{
		{status: 412, code: "PreconditionFailed", pre: true},
		{status: 404, code: "NoSuchKey", notFound: true},
		{status: 404, code: "NoSuchBucket", notFound: true},
		{status: 404, code: "NotFound", notFound: true},
		{status: 409, code: "ConditionalRequestConflict", transient: true},
		{status: 409, code: "BucketNotEmpty"},
		{status: 408, code: "RequestTimeout", transient: true},
		{status: 429, code: "TooManyRequests", transient: true},
		{status: 500, code: "InternalError", transient: true},
		{status: 503, code: "SlowDown", transient: true},
		{status: 400, code: "ExpiredToken", namesCredential: true},
		{status: 403, code: "InvalidAccessKeyId", namesCredential: true},
		{status: 403, code: "AccessDenied"},
	} {
		err := objstore.S3Err(s3Answer(c.status, c.code))
		if errors.Is(err, objstore.ErrNotFound) != c.notFound || errors.Is(err, objstore.ErrPrecondition) != c.pre ||
			objstore.IsTransient(err) != c.transient || strings.Contains(err.Error(), "AWS_PROFILE") != c.namesCredential {
			t.Errorf("%d %s: got %v (not found %v, precondition %v, transient %v); want not found %v, precondition %v, transient %v, credentials named %v",
				c.status, c.code, err, errors.Is(err, objstore.ErrNotFound), errors.Is(err, objstore.ErrPrecondition), objstore.IsTransient(err),
				c.notFound, c.pre, c.transient, c.namesCredential)
		}
	}
}

// The empty "folder/" objects that S3 consoles create are listed as not
// data, so that no reader opens one as a file.
func TestS3FolderMarker(t *testing.T) {
	ctx := context.Background()
	s, err := objstore.Open(ctx, objstoretest.S3(t)+"/root")
	if err != nil {
		t.Fatal(err)
	}
	var c *s3.Client
	if !s.As(&c) {
		t.Fatal("As(**s3.Client) = false")
	}
	loc, _ := objstore.Parse(s.Root())
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String("root/day=1/"), Body: bytes.NewReader(nil)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, "day=1/p.parquet", []byte("x"), objstore.IfAbsent); err != nil {
		t.Fatal(err)
	}
	var skipped []string
	if err := s.List(ctx, "", func(a objstore.Attrs) error {
		if a.Skip != "" {
			skipped = append(skipped, a.Key+": "+a.Skip)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListKeys(ctx, "")
	if err != nil || len(keys) != 1 || keys[0] != "day=1/p.parquet" || len(skipped) != 1 || skipped[0] != "day=1/: "+objstore.SkipFolder {
		t.Fatalf("keys %q, skipped %q, %v; want the one object, and the marker skipped", keys, skipped, err)
	}
}
