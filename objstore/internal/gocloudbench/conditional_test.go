package gocloudbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

// The conditional writes objstore's state needs, expressed through
// gocloud.dev/blob, checked against the same emulators: what the package
// doc of objstore says about them is what this test sees. Create-if-absent
// is portable (WriterOptions.IfNotExist); replace-if-version is not, and
// takes a BeforeWrite hook written against each driver's native request
// type. blob.Writer does not say which version it wrote: only gcsblob's
// hook can take the native *storage.Writer and read its generation after
// Close; s3blob and azureblob drop the upload's answer, ETag included.

// ifVersion is the BeforeWrite hook that makes a write replace only the
// version v (a GCS generation, an S3 or Azure ETag as Attributes gives it),
// for the driver of backend; nil when the driver offers no type to put a
// version on.
func ifVersion(backend, v string, gen int64) func(as func(any) bool) error {
	switch backend {
	case "gcs":
		// gcsblob hands out a pointer to its *ObjectHandle, so that the
		// hook can replace it with a conditional one.
		return func(as func(any) bool) error {
			var obj **storage.ObjectHandle
			if !as(&obj) {
				return errors.New("gcsblob offered no **storage.ObjectHandle")
			}
			*obj = (*obj).If(storage.Conditions{GenerationMatch: gen})
			return nil
		}
	case "s3":
		// s3blob writes through the S3 transfer manager, not PutObject.
		return func(as func(any) bool) error {
			var in *transfermanager.UploadObjectInput
			if !as(&in) {
				return errors.New("s3blob offered no *transfermanager.UploadObjectInput")
			}
			in.IfMatch = aws.String(v)
			return nil
		}
	case "azure":
		return func(as func(any) bool) error {
			var o *azblob.UploadStreamOptions
			if !as(&o) {
				return errors.New("azureblob offered no *azblob.UploadStreamOptions")
			}
			etag := azcore.ETag(v)
			o.AccessConditions = &azblob.AccessConditions{ModifiedAccessConditions: &azblobblob.ModifiedAccessConditions{IfMatch: &etag}}
			return nil
		}
	}
	return nil
}

// version is what ifVersion needs of the object's current attributes.
func version(t *testing.T, backend string, a *blob.Attributes) (string, int64) {
	t.Helper()
	if backend != "gcs" {
		return a.ETag, 0
	}
	var oa storage.ObjectAttrs
	if !a.As(&oa) {
		t.Fatal("gcsblob attributes are not storage.ObjectAttrs")
	}
	return "", oa.Generation
}

func TestConditionalWrites(t *testing.T) {
	ctx := context.Background()
	for _, backend := range []string{"gcs", "s3", "azure", "local", "mem"} {
		t.Run(backend, func(t *testing.T) {
			bk := openForTest(t, backend)
			key := "conditional/state.json"

			// Create-if-absent: portable, and its refusal is FailedPrecondition everywhere.
			if err := bk.WriteAll(ctx, key, []byte("v1"), &blob.WriterOptions{IfNotExist: true}); err != nil {
				t.Fatalf("create if absent: %v", err)
			}
			err := bk.WriteAll(ctx, key, []byte("v1 again"), &blob.WriterOptions{IfNotExist: true})
			if code := gcerrors.Code(err); code != gcerrors.FailedPrecondition {
				t.Fatalf("second create if absent: code %v (%v), want FailedPrecondition", code, err)
			}

			a, err := bk.Attributes(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			v, gen := version(t, backend, a)
			hook := ifVersion(backend, v, gen)
			if hook == nil {
				// fileblob offers only the temporary *os.File, memblob nothing:
				// no type carries a version.
				var offered []string
				err := bk.WriteAll(ctx, key, []byte("v2"), &blob.WriterOptions{BeforeWrite: func(as func(any) bool) error {
					var f *os.File
					if as(&f) {
						offered = append(offered, "*os.File")
					}
					for _, target := range []any{new(**storage.ObjectHandle), new(*transfermanager.UploadObjectInput),
						new(*azblob.UploadStreamOptions), new(*s3.PutObjectInput)} {
						if as(target) {
							offered = append(offered, fmt.Sprintf("%T", target))
						}
					}
					return nil
				}})
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"local": "[*os.File]", "mem": "[]"}[backend]
				if got := fmt.Sprint(offered); got != want {
					t.Errorf("BeforeWrite offered %s, want %s", got, want)
				}
				return
			}

			// Replace-if-version, through the driver's own request type.
			var gw *storage.Writer
			write := hook
			if backend == "gcs" {
				write = func(as func(any) bool) error {
					if err := hook(as); err != nil {
						return err
					}
					if !as(&gw) { // after the handle: gcsblob's order
						return errors.New("gcsblob offered no *storage.Writer")
					}
					return nil
				}
			}
			if err := bk.WriteAll(ctx, key, []byte("v2"), &blob.WriterOptions{BeforeWrite: write}); err != nil {
				t.Fatalf("replace at the current version: %v", err)
			}
			if gw != nil {
				a, err := bk.Attributes(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if _, now := version(t, backend, a); gw.Attrs() == nil || gw.Attrs().Generation != now {
					t.Errorf("the native writer's generation is not the object's (%d)", now)
				}
			}
			// v is now stale: the same write must be refused.
			err = bk.WriteAll(ctx, key, []byte("v3"), &blob.WriterOptions{BeforeWrite: hook})
			if code := gcerrors.Code(err); code != gcerrors.FailedPrecondition {
				t.Errorf("replace at a stale version: code %v (%v), want FailedPrecondition", code, err)
			}
			// A version on a name that holds nothing: refused everywhere,
			// but S3 answers 404 NoSuchKey (as Amazon documents it), which
			// s3blob reports as NotFound, not FailedPrecondition.
			err = bk.WriteAll(ctx, "conditional/absent.json", []byte("x"), &blob.WriterOptions{BeforeWrite: hook})
			want := map[string]gcerrors.ErrorCode{"gcs": gcerrors.FailedPrecondition, "s3": gcerrors.NotFound, "azure": gcerrors.FailedPrecondition}[backend]
			if code := gcerrors.Code(err); code != want {
				t.Errorf("replace at a version of an absent name: code %v (%v), want %v", code, err, want)
			}
		})
	}
}

// openForTest opens a new, empty bucket of backend through gocloud.
func openForTest(t *testing.T, backend string) *blob.Bucket {
	t.Helper()
	ctx := context.Background()
	if backend == "mem" {
		bk, err := blob.OpenBucket(ctx, "mem://")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bk.Close() })
		return bk
	}
	_, open := locate(t, backend)
	bk, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bk.Close() })
	return bk
}
