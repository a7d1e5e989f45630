package objstoretest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The S3 server is versitygw, the Versity S3 gateway, over its posix
// backend: a real S3 API server (Apache-2.0) that checks If-None-Match: *
// and If-Match on PutObject and on ranged GETs, with a lock per object, and
// answers as Amazon S3 does (412 PreconditionFailed, 404 NoSuchKey for
// If-Match on a missing name, MD5 ETags). Objects are files under the
// emulator's temporary folder.

// S3AccessKey and S3SecretKey are the emulator's only account, which S3
// puts in the environment.
const (
	S3AccessKey = "convertro-etl-test"
	S3SecretKey = "convertro-etl-test-secret"
	// S3Region is the region S3 puts in the environment.
	S3Region = "us-east-1"
)

var s3EnvOnce sync.Once

// S3 starts versitygw (once), points this process's AWS configuration at
// it the way an operator would point the AWS tools at an S3-compatible
// server (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_REGION, and no profile), creates a new bucket and returns its URI,
// s3://<bucket>. Call it before anything makes the process's S3 client:
// that client reads the environment once. Child processes that inherit the
// environment use the emulator too.
func S3(t testing.TB) string {
	t.Helper()
	bin := Binary(t, "bin/versitygw")
	e := start(t, "s3", bin, func(port, dir string) []string {
		// Every folder under dir is a bucket.
		return []string{"--port", "127.0.0.1:" + port, "--access", S3AccessKey, "--secret", S3SecretKey,
			"--region", S3Region, "--quiet", "posix", dir}
	}, func(addr string) bool { return httpReady("http://" + addr + "/") })
	endpoint := "http://" + e.addr
	var envErr error
	s3EnvOnce.Do(func() {
		// A developer's own profile or session must not mix into the
		// emulator's account: unset what would override or join ours, and
		// read no shared files.
		none := filepath.Join(e.dir, "no-aws-config") // never created
		for k, v := range map[string]string{
			"AWS_ENDPOINT_URL_S3":         endpoint,
			"AWS_ACCESS_KEY_ID":           S3AccessKey,
			"AWS_SECRET_ACCESS_KEY":       S3SecretKey,
			"AWS_REGION":                  S3Region,
			"AWS_CONFIG_FILE":             none,
			"AWS_SHARED_CREDENTIALS_FILE": none,
		} {
			if err := os.Setenv(k, v); err != nil {
				envErr = err
			}
		}
		for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
			"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT"} {
			if err := os.Unsetenv(k); err != nil {
				envErr = err
			}
		}
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := uniqueName("b")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", bucket, endpoint, err)
	}
	return "s3://" + bucket
}
