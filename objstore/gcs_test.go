package objstore

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// deadAddr is a local host:port nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// listWithin lists gs://<bucket>/tracks/ with client c and fails the test if
// that has not ended after a generous 90 s (the bound aimed at is about
// 30 s; the machine is loaded, so the test does not time it more closely).
func listWithin(t *testing.T, c *storage.Client, bucket string) error {
	t.Helper()
	defer RouteGCSBucket(bucket, c)()
	done := make(chan error, 1)
	go func() {
		s, err := Open(context.Background(), "gs://"+bucket+"/tracks/")
		if err == nil {
			_, err = s.ListKeys(context.Background(), "")
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(90 * time.Second):
		t.Fatal("listing still running after 90 s")
		return nil
	}
}

// wantUnreachable checks that err names the server and carries the fix.
func wantUnreachable(t *testing.T, err error, server string, mentions ...string) {
	t.Helper()
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want an *UnreachableError", err, err)
	}
	if !strings.Contains(ue.Server, server) {
		t.Errorf("server %q, want %q", ue.Server, server)
	}
	t.Logf("error: %v", err)
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// An emulator address nothing listens on: the error comes when the client
// is made (it probes the emulator) and names the address and the variable.
func TestGCSDeadEmulator(t *testing.T) {
	addr := deadAddr(t)
	t.Setenv("STORAGE_EMULATOR_HOST", addr)
	_, err := newGCSClient(context.Background())
	wantUnreachable(t, err, "STORAGE_EMULATOR_HOST", addr, "STORAGE_EMULATOR_HOST")
}

// Servers that cannot be reached once the client exists: the call gives up
// after the client's bounded retries (about 20 s) instead of retrying for
// ever, and the error names the server and its fix. The two cases run
// side by side to keep the test's time to one bound.
//   - endpoint: the storage endpoint's port is closed.
//   - token server: credentials (GOOGLE_APPLICATION_CREDENTIALS, no emulator)
//     whose token_uri is a closed port, with a storage endpoint that works
//     (a fake-gcs-server); no storage request goes out without a token.
func TestGCSUnreachableAfterStart(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "bkt"})
	srv.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "bkt", Name: "tracks/a.parquet"},
		Content:     []byte("data"),
	})
	var requests atomic.Int64
	h := srv.HTTPHandler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	token := deadAddr(t)
	creds := filepath.Join(t.TempDir(), "sa.json")
	writeServiceAccount(t, creds, "http://"+token+"/token")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", creds)

	t.Run("endpoint", func(t *testing.T) {
		t.Parallel()
		dead := deadAddr(t)
		client, err := newGCSClient(context.Background(),
			option.WithEndpoint("http://"+dead+"/storage/v1/"), option.WithoutAuthentication())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		err = listWithin(t, client, "dead-endpoint")
		wantUnreachable(t, err, "GCS endpoint", "list gs://dead-endpoint/tracks/: ", dead, "STORAGE_EMULATOR_HOST")
	})
	t.Run("token server", func(t *testing.T) {
		t.Parallel()
		client, err := newGCSClient(context.Background(), option.WithEndpoint(ts.URL+"/storage/v1/"))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		err = listWithin(t, client, "bkt")
		wantUnreachable(t, err, "token server", "list gs://bkt/tracks/: ", token,
			"GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login")
		if n := requests.Load(); n != 0 {
			t.Errorf("%d storage requests reached the endpoint without a token", n)
		}
	})
}

// writeServiceAccount writes a service-account key file (a fresh RSA key)
// whose token endpoint is tokenURI.
func writeServiceAccount(t *testing.T, path, tokenURI string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "test-project",
		"private_key_id": "test-key",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "etl@test-project.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      tokenURI,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
