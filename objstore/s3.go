package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// s3://bucket/prefix: Amazon S3, or any server that speaks its API and
// honours conditional writes (R2, Ceph, MinIO), through the AWS SDK for Go
// v2. Versions are ETags without their quotes. A conditional write sends
// If-None-Match: * (absent) or If-Match: "<etag>" (a version), which S3
// checks atomically; a pinned reader sends If-Match with every ranged GET,
// so it never mixes the bytes of two versions. An ETag is derived from the
// bytes (the MD5 of a single-part upload), so writing the same bytes again
// keeps the version: a writer that holds it holds exactly those bytes.
//
// Configuration is the AWS tools' own, with no flag of ours: credentials,
// region and endpoint come from the environment, the shared config and
// credentials files (AWS_PROFILE), web identity (IRSA) or the instance's
// role. AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) names another server,
// which is then addressed path-style and, with no region configured, as
// us-east-1.
//
// Failures: the kinds of objstore.go; a server that cannot be reached is an
// *UnreachableError naming it, and missing credentials say what provides
// them. The client is safe for concurrent use, and so are the backend and
// its readers.
func init() { Register("s3", openS3) }

const (
	// credentialsTimeout bounds the first fetch of credentials when the
	// client is made: off AWS, the last provider of the chain asks an
	// instance metadata service that may never answer, and a missing
	// credential must be reported in seconds.
	credentialsTimeout = 5 * time.Second
	// customEndpointRegion is the region signed for when a custom endpoint
	// is set and no region is: what S3-compatible servers expect.
	customEndpointRegion = "us-east-1"
	// maxSinglePut is S3's largest single-request upload. Larger objects
	// need a multipart upload, which this backend does not make: its
	// writes are state, far smaller.
	maxSinglePut = 5 << 30
	// precheckAbove is the size above which a conditional write checks its
	// precondition with a HEAD before sending the body (see Put).
	precheckAbove = 2 << 20
	// spoolInMemory is the largest body of a non-seekable reader that Put
	// holds in memory to sign it; larger ones go through a temporary file.
	spoolInMemory = 16 << 20
)

// idleConnsPerHost is how many idle connections to the store the client
// keeps: above the readers' default reads in flight (64).
const idleConnsPerHost = 128

// s3Client is the process's one S3 client, made on first use.
var s3Client = sync.OnceValues(func() (*s3.Client, error) {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("create S3 client: load the AWS configuration: %w; check AWS_PROFILE%s and AWS_CONFIG_FILE%s",
			err, currentValue("AWS_PROFILE"), currentValue("AWS_CONFIG_FILE"))
	}
	return newS3Client(ctx, cfg)
})

// newS3Client makes a client from cfg as the AWS tools would, checks that
// a custom endpoint accepts connections, and fetches credentials once,
// bounded by credentialsTimeout, so that a missing one fails here with what
// provides it. Its own retries are bounded too; writes do not use them (see
// Put).
func newS3Client(ctx context.Context, cfg aws.Config) (*s3.Client, error) {
	if cfg.Credentials != nil {
		cfg.Credentials = explainedCredentials{cfg.Credentials}
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// BaseEndpoint is set here from the environment or the profile;
		// S3-compatible servers seldom have a DNS name per bucket.
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
			if o.Region == "" {
				o.Region = customEndpointRegion
			}
		}
		o.Retryer = awsretry.NewStandard(func(so *awsretry.StandardOptions) {
			so.MaxBackoff = backoff.Max
			// The token bucket would refuse retries after a burst of
			// failures from parallel readers: CallTimeout bounds them.
			so.RateLimiter = ratelimit.None
		})
		// Ranged reads carry no checksum to validate; saying so on every
		// read is noise.
		o.DisableLogOutputChecksumValidationSkipped = true
		// Readers keep tens of ranged reads in flight: with the SDK's 10
		// idle connections a host, most would open a connection (a TLS
		// handshake) of their own.
		if bc, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
			o.HTTPClient = bc.WithTransportOptions(func(t *http.Transport) {
				t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, idleConnsPerHost)
				t.MaxIdleConns = max(t.MaxIdleConns, idleConnsPerHost)
			})
		}
	})
	o := c.Options()
	if o.Region == "" {
		return nil, fmt.Errorf("create S3 client: no AWS region: set AWS_REGION, or region in the profile (AWS_PROFILE%s)", currentValue("AWS_PROFILE"))
	}
	endpoint := aws.ToString(o.BaseEndpoint)
	if endpoint != "" {
		if err := probe(ctx, endpoint, s3EndpointServer(), s3EndpointFix()); err != nil {
			return nil, fmt.Errorf("create S3 client: %w", err)
		}
	}
	if o.Credentials != nil {
		cctx, cancel := WithTimeout(ctx, credentialsTimeout)
		defer cancel()
		if _, err := o.Credentials.Retrieve(cctx); err != nil {
			var ce *credentialsError
			if errors.As(err, &ce) && errors.Is(context.Cause(cctx), errNoAnswer) {
				ce.note = fmt.Sprintf("no provider answered within %s (off AWS, the instance metadata service, asked last, may never answer)", credentialsTimeout)
			}
			return nil, fmt.Errorf("create S3 client: %w", err)
		}
	}
	return c, nil
}

// explainedCredentials marks every failure to get credentials, so that
// the error names what provides them, whichever call needed them.
type explainedCredentials struct{ aws.CredentialsProvider }

func (p explainedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, &credentialsError{err: err}
	}
	return c, nil
}

// credentialsError is a failure to get AWS credentials.
type credentialsError struct {
	err  error
	note string // why, when err alone does not say
}

func (e *credentialsError) Error() string {
	msg := "no usable AWS credentials (" + e.err.Error() + ")"
	if e.note != "" {
		msg += ": " + e.note
	}
	return msg + "; " + credentialsFix()
}

func (e *credentialsError) Unwrap() error { return e.err }

func credentialsFix() string {
	return "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" + currentValue("AWS_ACCESS_KEY_ID") +
		", or AWS_PROFILE" + currentValue("AWS_PROFILE") + " (run `aws sso login` for an SSO profile)," +
		" or on AWS give the instance, task or pod (IRSA) a role"
}

// s3EndpointServer names the custom endpoint by the setting that set it.
func s3EndpointServer() string {
	switch {
	case os.Getenv("AWS_ENDPOINT_URL_S3") != "":
		return "S3 endpoint (AWS_ENDPOINT_URL_S3)"
	case os.Getenv("AWS_ENDPOINT_URL") != "":
		return "S3 endpoint (AWS_ENDPOINT_URL)"
	}
	return "S3 endpoint (endpoint_url of the AWS profile)"
}

func s3EndpointFix() string {
	return "start the server, or correct AWS_ENDPOINT_URL_S3" + currentValue("AWS_ENDPOINT_URL_S3") +
		" (or AWS_ENDPOINT_URL" + currentValue("AWS_ENDPOINT_URL") + "); unset them to use Amazon S3"
}

type s3Backend struct {
	client   *s3.Client
	bucket   string
	prefix   string // "" or ends with "/"
	endpoint string // the custom endpoint, "" for Amazon S3
}

var _ Backend = (*s3Backend)(nil)

func openS3(ctx context.Context, loc Location) (Backend, error) {
	c, err := s3Client()
	if err != nil {
		return nil, err
	}
	return newS3Backend(c, loc), nil
}

func newS3Backend(c *s3.Client, loc Location) *s3Backend {
	return &s3Backend{client: c, bucket: loc.Bucket, prefix: folder(loc.Path), endpoint: aws.ToString(c.Options().BaseEndpoint)}
}

func (b *s3Backend) URI(key string) string  { return "s3://" + b.bucket + "/" + b.prefix + key }
func (b *s3Backend) Name(key string) string { return b.prefix + key }

func (b *s3Backend) As(target any) bool {
	if t, ok := target.(**s3.Client); ok {
		*t = b.client
		return true
	}
	return false
}

// etagVersion is an ETag as a version: without its quotes, which not every
// server sends.
func etagVersion(etag *string) string { return strings.Trim(aws.ToString(etag), `"`) }

// etagHeader is a version as an If-Match value.
func etagHeader(version string) *string { return aws.String(`"` + version + `"`) }

// List reads the listing page by page (ListPageSize keys a page); it ends
// if no page arrives for StallTimeout, however long the whole listing takes.
func (b *s3Backend) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	wctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket:  aws.String(b.bucket),
		Prefix:  aws.String(b.prefix + prefix),
		MaxKeys: aws.Int32(ListPageSize.Load()),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(wctx)
		if err != nil {
			return b.err(wctx, err)
		}
		touch()
		for _, o := range page.Contents {
			a := Attrs{Key: strings.TrimPrefix(aws.ToString(o.Key), b.prefix), Size: aws.ToInt64(o.Size), Version: etagVersion(o.ETag)}
			if err := fn(a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *s3Backend) Stat(ctx context.Context, key string) (Attrs, error) {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.prefix + key)})
	if err != nil {
		return Attrs{}, b.err(ctx, err)
	}
	return Attrs{Key: key, Size: aws.ToInt64(out.ContentLength), Version: etagVersion(out.ETag)}, nil
}

// Open pins version, or the current ETag when version is "": one HEAD,
// conditional on the version when there is one.
func (b *s3Backend) Open(ctx context.Context, key, version string) (Reader, Attrs, error) {
	if key == "" {
		return nil, Attrs{}, errors.New("empty key")
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.prefix + key)}
	if version != "" {
		in.IfMatch = etagHeader(version)
	}
	actx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	out, err := b.client.HeadObject(actx, in)
	if err != nil {
		return nil, Attrs{}, b.pinnedErr(actx, err)
	}
	a := Attrs{Key: key, Size: aws.ToInt64(out.ContentLength), Version: etagVersion(out.ETag)}
	return &s3Reader{ctx: ctx, b: b, key: b.prefix + key, size: a.Size, version: a.Version}, a, nil
}

// OpenListed pins the listed ETag with no request: every read is
// conditional on it.
func (b *s3Backend) OpenListed(ctx context.Context, key string, a Attrs) (Reader, error) {
	return &s3Reader{ctx: ctx, b: b, key: b.prefix + key, size: a.Size, version: a.Version}, nil
}

// pinnedErr is err for a read conditional on a version: a 412 says the
// version is gone, and the caller asked for those bytes, not for a write.
func (b *s3Backend) pinnedErr(ctx context.Context, err error) error {
	if httpStatus(err) == 412 {
		return fmt.Errorf("%w: the version is gone (%w)", ErrNotFound, err)
	}
	return b.err(ctx, err)
}

// s3Reader reads one ETag by ranges: one conditional ranged GET per ReadAt.
type s3Reader struct {
	ctx     context.Context // the Open context: io.ReaderAt has no ctx slot
	b       *s3Backend
	key     string // the whole name in the bucket
	size    int64
	version string
}

// ReadAt ends if the range stops arriving for StallTimeout; the client
// retries a transient failure of the request. A 412 means the object was
// replaced since Open: ErrNotFound, which the caller reports as a change.
func (r *s3Reader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if off >= r.size {
		return 0, io.EOF
	}
	ctx, touch, stop := Watchdog(r.ctx, StallTimeout)
	defer stop()
	out, err := r.b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket:  aws.String(r.b.bucket),
		Key:     aws.String(r.key),
		IfMatch: etagHeader(r.version),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)),
	})
	if err != nil {
		return 0, r.b.pinnedErr(ctx, err)
	}
	defer out.Body.Close()
	n, err := io.ReadFull(TouchReader{R: out.Body, Touch: touch}, p)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // short: the caller reports a change
	}
	return n, r.b.err(ctx, err)
}

// Version is the pinned ETag: the reader never reads another.
func (r *s3Reader) Version() (int64, string, error) { return r.size, r.version, nil }
func (r *s3Reader) Close() error                    { return nil }

// Get reads the whole object; it ends if the bytes stop coming for
// StallTimeout, whatever the object's size. The SDK checks the bytes
// against the object's checksum when the server stored one.
func (b *s3Backend) Get(ctx context.Context, key string, w io.Writer) (string, error) {
	ctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.prefix + key)})
	if err != nil {
		return "", b.err(ctx, err)
	}
	defer out.Body.Close()
	if _, err := io.Copy(w, TouchReader{R: out.Body, Touch: touch}); err != nil {
		return "", b.err(ctx, err)
	}
	return etagVersion(out.ETag), nil
}

// Put uploads in one request, which S3 stores whole or not at all. The
// SDK does not retry it: a retried conditional write whose first attempt
// landed unseen would fail its own precondition, and only the Store knows
// to check whether the bytes landed (see Store.put).
//
// A conditional write of more than precheckAbove bytes first asks for its
// precondition with a HEAD, so that a doomed upload is not sent at all: a
// server may answer 412 before it has read the body and then cut the
// connection under the rest of it, which the client can only see as a
// reset, worth another attempt, instead of the refusal it was. The PUT
// still carries the condition, which the server checks atomically.
func (b *s3Backend) Put(ctx context.Context, key string, r io.Reader, size int64, pre Precondition) (string, error) {
	if size > maxSinglePut {
		return "", fmt.Errorf("%d bytes: S3 takes at most %d in one upload, and this backend makes no multipart uploads", size, int64(maxSinglePut))
	}
	if size > precheckAbove && !pre.Any() {
		if err := b.precheck(ctx, key, pre); err != nil {
			return "", err
		}
	}
	in := &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.prefix + key), ContentLength: aws.Int64(size)}
	switch {
	case pre.Absent():
		in.IfNoneMatch = aws.String("*")
	case !pre.Any():
		in.IfMatch = etagHeader(pre.Version())
	}
	if strings.HasSuffix(key, ".json") {
		in.ContentType = aws.String("application/json")
	}
	body, cleanup, err := seekable(r, size)
	if err != nil {
		return "", err
	}
	defer cleanup()
	ctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	in.Body = touchReadSeeker{body, touch}
	out, err := b.client.PutObject(ctx, in, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		if pre.Version() != "" && apiCode(err) == "NoSuchKey" {
			// If-Match on a name that holds nothing: the version is not there.
			return "", fmt.Errorf("%w (%w)", ErrPrecondition, err)
		}
		return "", b.err(ctx, err)
	}
	if out.ETag == nil {
		return "", errors.New("the S3 server answered a write with no ETag")
	}
	return etagVersion(out.ETag), nil
}

// precheck returns ErrPrecondition when pre does not hold now.
func (b *s3Backend) precheck(ctx context.Context, key string, pre Precondition) error {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	in := &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.prefix + key)}
	if !pre.Absent() {
		in.IfMatch = etagHeader(pre.Version())
	}
	_, err := b.client.HeadObject(ctx, in)
	switch code := httpStatus(err); {
	case err == nil && pre.Absent():
		return fmt.Errorf("%w: the object exists", ErrPrecondition)
	case err == nil:
		return nil
	case code == 404 && pre.Absent():
		return nil
	case code == 404 || code == 412:
		return fmt.Errorf("%w (%w)", ErrPrecondition, err)
	}
	return b.err(ctx, err)
}

// seekable returns r as a ReadSeeker, which the SDK needs to sign the
// payload and to know where it starts: r itself when it is one (the Store
// passes one), else a copy of its size bytes, in memory when small and in
// a temporary file otherwise. cleanup releases the copy.
func seekable(r io.Reader, size int64) (body io.ReadSeeker, cleanup func(), err error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		return rs, func() {}, nil
	}
	if size <= spoolInMemory {
		data, err := io.ReadAll(io.LimitReader(r, size))
		if err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(data), func() {}, nil
	}
	f, err := os.CreateTemp("", "convertro-etl-s3-put-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.CopyN(f, r, size); err != nil {
		cleanup()
		return nil, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, nil, err
	}
	return f, cleanup, nil
}

// touchReadSeeker is a TouchReader that the SDK can still seek.
type touchReadSeeker struct {
	io.ReadSeeker
	touch func()
}

func (r touchReadSeeker) Read(p []byte) (int, error) {
	n, err := r.ReadSeeker.Read(p)
	if n > 0 {
		r.touch()
	}
	return n, err
}

// Delete removes key; S3 answers an absent key as a success.
func (b *s3Backend) Delete(ctx context.Context, key string) error {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.prefix + key)})
	return b.err(ctx, err)
}

// httpStatus is the HTTP status of a server's answer, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// apiCode is the S3 error code of a server's answer ("NoSuchKey"), or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// err maps the SDK's errors to the kinds, keeping the original in the
// chain; a server that cannot be reached becomes an *UnreachableError that
// names it. ctx is the call's, whose cause says why it ended.
func (b *s3Backend) err(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ce *credentialsError
	if errors.As(err, &ce) {
		// The answer in its chain, if any, is the credentials server's.
		return explainUnreachable(ctx, err, b.describe)
	}
	if code := httpStatus(err); code != 0 {
		switch {
		case code == 412:
			return fmt.Errorf("%w (%w)", ErrPrecondition, err)
		case code == 404:
			// NoSuchKey, NoSuchBucket, or a HEAD's bare NotFound.
			return fmt.Errorf("%w (%w)", ErrNotFound, err)
		case code == 409 && apiCode(err) == "ConditionalRequestConflict":
			// Another conditional write to the name was in flight: S3
			// asks for the write to be made again.
			return Transient(err)
		case statusTransient(code):
			return Transient(err)
		case code == 400 || code == 403:
			switch apiCode(err) {
			case "ExpiredToken", "InvalidAccessKeyId", "InvalidToken", "SignatureDoesNotMatch", "TokenRefreshRequired":
				return fmt.Errorf("%w; %s", err, credentialsFix())
			}
		}
		return err
	}
	return explainUnreachable(ctx, err, b.describe)
}

// describe names the server a failed request went to: the S3 endpoint, or
// else one that was asked for credentials (instance metadata, STS, SSO).
func (b *s3Backend) describe(u *url.URL) (string, string) {
	switch {
	case b.endpoint != "" && u.Host == hostOf(b.endpoint):
		return s3EndpointServer(), s3EndpointFix()
	case b.endpoint == "" && s3Host(u.Hostname()):
		return "S3 endpoint", "check the network path to it (proxy, firewall, DNS) and AWS_REGION" + currentValue("AWS_REGION") +
			"; AWS_ENDPOINT_URL_S3, when set, replaces it"
	}
	return "AWS credentials server", credentialsFix()
}

// s3Host reports whether host is one of Amazon S3's own names
// (s3.amazonaws.com, bucket.s3.eu-west-1.amazonaws.com, s3-fips...).
func s3Host(host string) bool {
	if !strings.HasSuffix(host, ".amazonaws.com") && !strings.HasSuffix(host, ".amazonaws.com.cn") {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "s3" || strings.HasPrefix(label, "s3-") {
			return true
		}
	}
	return false
}
