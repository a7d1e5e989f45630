package readers

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"github.com/convertro-etl/convertro-etl/internal/gcscall"
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

// listWithin opens and lists uri, and fails the test if that has not ended
// after a generous 90 s (the bound aimed at is about 30 s; the machine is
// loaded, so the test does not time it more closely).
func listWithin(t *testing.T, uri string, o SourceOptions) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		s, err := OpenSource(context.Background(), uri, o)
		if err == nil {
			_, err = s.Scan(context.Background())
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(90 * time.Second):
		t.Fatalf("listing %s still running after 90 s", uri)
		return nil
	}
}

// wantUnreachable checks that err names the server and carries the fix.
func wantUnreachable(t *testing.T, err error, server string, mentions ...string) {
	t.Helper()
	var ue *gcscall.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want a *gcscall.UnreachableError", err, err)
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

// An emulator address nothing listens on: the error comes at once (the
// client's creation probes it) and names the address and the variable.
func TestStorageGCSDeadEmulator(t *testing.T) {
	addr := deadAddr(t)
	t.Setenv("STORAGE_EMULATOR_HOST", addr)
	err := listWithin(t, "gs://"+testBucket+"/tracks/", SourceOptions{})
	wantUnreachable(t, err, "STORAGE_EMULATOR_HOST", "open source gs://"+testBucket+"/tracks/: ", addr, "STORAGE_EMULATOR_HOST")
}

// Servers that cannot be reached once the client exists: the call gives up
// after the client's bounded retries (about 20 s) instead of retrying for
// ever, and the error names the server and its fix. The two cases run
// side by side to keep the test's time to one bound.
//   - endpoint: the storage endpoint's port is closed.
//   - token server: credentials (GOOGLE_APPLICATION_CREDENTIALS, no emulator)
//     whose token_uri is a closed port, with a storage endpoint that works
//     (a fake-gcs-server); no storage request goes out without a token.
func TestStorageGCSUnreachableAfterStart(t *testing.T) {
	srv, c := newFakeGCS(t) // sets STORAGE_EMULATOR_HOST: unset it below
	endpoint := "http://" + os.Getenv("STORAGE_EMULATOR_HOST") + "/storage/v1/"
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: testBucket, Name: "tracks/a.parquet"},
		Content:     []byte("data"),
	})
	token := deadAddr(t)
	creds := filepath.Join(t.TempDir(), "sa.json")
	writeServiceAccount(t, creds, "http://"+token+"/token")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", creds)

	t.Run("endpoint", func(t *testing.T) {
		t.Parallel()
		dead := deadAddr(t)
		client, err := NewGCSClient(context.Background(),
			option.WithEndpoint("http://"+dead+"/storage/v1/"), option.WithoutAuthentication())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		err = listWithin(t, "gs://"+testBucket+"/tracks/", SourceOptions{GCSClient: client})
		wantUnreachable(t, err, "GCS endpoint", "list gs://"+testBucket+"/tracks/: ", dead, "STORAGE_EMULATOR_HOST")
	})
	t.Run("token server", func(t *testing.T) {
		t.Parallel()
		client, err := NewGCSClient(context.Background(), option.WithEndpoint(endpoint))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		err = listWithin(t, "gs://"+testBucket+"/tracks/", SourceOptions{GCSClient: client})
		wantUnreachable(t, err, "token server", "list gs://"+testBucket+"/tracks/: ", token,
			"GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login")
		if n := c.requests.Load(); n != 0 {
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

// A running listing logs how far it got, on both backends.
func TestStorageListProgress(t *testing.T) {
	old := listProgressEvery
	listProgressEvery = 0 // a line per object after the first
	t.Cleanup(func() { listProgressEvery = old })
	for name, newHarness := range map[string]func(*testing.T) *storageHarness{"dir": newDirHarness, "gcs": newGCSHarness} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			for i := range 3 {
				h.put(t, fmt.Sprintf("p/%d.parquet", i), []byte("x"))
			}
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			s := openSource(t, h.uri("p"), SourceOptions{Logger: log})
			if _, err := s.Scan(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := "listed 3 objects under " + h.uri("p") + " so far"
			if !strings.Contains(buf.String(), want) {
				t.Errorf("log %q, want a line %q", buf.String(), want)
			}
		})
	}
}
