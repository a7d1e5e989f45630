package objstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestAzureConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) string { return objstoretest.Azure(t) + "/some/prefix" })
}

// An ADLS Gen2 location is served by the Blob API of its account: the same
// suite through abfss://container@account.dfs.core.windows.net/.
func TestAzureABFSSConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) string {
		container := strings.TrimPrefix(objstoretest.Azure(t), "az://")
		return "abfss://" + container + "@" + objstoretest.AzuriteAccount + ".dfs.core.windows.net/some/prefix"
	})
}

// Listings and headers quote ETags differently; a version must read the
// same from Write, Stat, Read, Open and List, or a listed version could
// never be pinned.
func TestAzureVersionsAgree(t *testing.T) {
	ctx := context.Background()
	s, err := objstore.Open(ctx, objstoretest.Azure(t)+"/v")
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Write(ctx, "a.json", []byte("{}"), objstore.IfAbsent)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, `"`) {
		t.Errorf("version %s keeps the ETag's quotes", v)
	}
	a, err := s.Stat(ctx, "a.json")
	if err != nil || a.Version != v {
		t.Errorf("Stat: version %q, %v; Write gave %q", a.Version, err, v)
	}
	if _, rv, err := s.Read(ctx, "a.json"); err != nil || rv != v {
		t.Errorf("Read: version %q, %v; Write gave %q", rv, err, v)
	}
	var listed []string
	if err := s.List(ctx, "", func(a objstore.Attrs) error { listed = append(listed, a.Version); return nil }); err != nil || len(listed) != 1 || listed[0] != v {
		t.Fatalf("List: versions %q, %v; Write gave %q", listed, err, v)
	}
	r, oa, err := s.Open(ctx, "a.json", listed[0])
	if err != nil || oa.Version != v {
		t.Fatalf("Open at the listed version: %+v, %v", oa, err)
	}
	r.Close()
}

func TestAzureABFSSLocations(t *testing.T) {
	objstoretest.Azure(t) // the connection string names AzuriteAccount
	ctx := context.Background()
	for _, uri := range []string{
		"abfss://container/p", // no account
		"abfss://@" + objstoretest.AzuriteAccount + ".dfs.core.windows.net/p",   // no container
		"abfss://c@" + objstoretest.AzuriteAccount + ".blob.core.windows.net/p", // not a dfs host
	} {
		if _, err := objstore.Open(ctx, uri); err == nil || !strings.Contains(err.Error(), "abfss://<container>@<account>") {
			t.Errorf("Open(%s): %v, want the abfss form explained", uri, err)
		}
	}
	_, err := objstore.Open(ctx, "abfss://c@otheraccount.dfs.core.windows.net/p")
	if err == nil || !strings.Contains(err.Error(), "AZURE_STORAGE_CONNECTION_STRING is for account "+objstoretest.AzuriteAccount) {
		t.Errorf("Open of another account's abfss location: %v, want the mismatch named", err)
	}
	s, err := objstore.Open(ctx, "abfss://c@"+objstoretest.AzuriteAccount+".dfs.core.windows.net/day=1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.URI("x.parquet"), "abfss://c@"+objstoretest.AzuriteAccount+".dfs.core.windows.net/day=1/x.parquet"; got != want {
		t.Errorf("URI = %q, want %q", got, want)
	}
}

// wantFix checks that err names every way to give the backend an account.
func wantFix(t *testing.T, err error) {
	t.Helper()
	for _, fix := range []string{"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "az login"} {
		if err == nil || !strings.Contains(err.Error(), fix) {
			t.Errorf("error %v does not name %s", err, fix)
		}
	}
}

func TestAzureNoAccount(t *testing.T) {
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	t.Setenv("AZURE_STORAGE_ACCOUNT", "")
	_, err := objstore.Open(context.Background(), "az://c/p")
	wantFix(t, err)
}

// With an account but nothing to sign in with, DefaultAzureCredential's
// chain fails and says so within seconds. The chain is confined to the
// developer credentials (Azure CLI, azd, PowerShell) with empty
// configuration folders, so that credentials of the machine running the
// test (a managed identity on a CI runner, a login at home) cannot answer.
func TestAzureMissingCredential(t *testing.T) {
	home := t.TempDir()
	for k, v := range map[string]string{
		"AZURE_STORAGE_CONNECTION_STRING": "",
		"AZURE_STORAGE_ACCOUNT":           "convertroetlnocred",
		"AZURE_TOKEN_CREDENTIALS":         "dev",
		"AZURE_CONFIG_DIR":                home,
		"AZD_CONFIG_DIR":                  home,
		"HOME":                            home,
	} {
		t.Setenv(k, v)
	}
	start := time.Now()
	_, err := objstore.Open(context.Background(), "az://c/p")
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("a missing credential took %s to report", el)
	}
	wantFix(t, err)
	if err != nil && !strings.Contains(err.Error(), "no Azure credentials") {
		t.Errorf("error %v does not say the credentials are missing", err)
	}
}

// silentCredential never answers and ignores its context: the worst a
// credential chain can do.
type silentCredential struct{ done chan struct{} }

func (c silentCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	<-c.done
	return azcore.AccessToken{}, errors.New("test over")
}

func TestAzureCredentialTimeout(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	start := time.Now()
	_, err := objstore.OpenAzureWith("", "convertroetlsilent", "", func() (azcore.TokenCredential, error) {
		return silentCredential{done}, nil
	}, time.Second, "c")
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("a credential that never answers held the open for %s", el)
	}
	wantFix(t, err)
	if err != nil && !strings.Contains(err.Error(), "no token within 1s") {
		t.Errorf("error %v does not say that no token came in time", err)
	}
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func connString(addr string) string {
	return "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=c2VjcmV0LWtleS1ub3Qtc2hvd24=;BlobEndpoint=http://" + addr + "/acct;"
}

func wantUnreachable(t *testing.T, err error, addr string) {
	t.Helper()
	var ue *objstore.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("%v: want an *objstore.UnreachableError", err)
	}
	if ue.Endpoint != "http://"+addr || !strings.Contains(ue.Server, "AZURE_STORAGE_CONNECTION_STRING") ||
		!strings.Contains(ue.Fix, "AZURE_STORAGE_CONNECTION_STRING") {
		t.Errorf("%+v: want endpoint http://%s, and the server and fix to name AZURE_STORAGE_CONNECTION_STRING", ue, addr)
	}
	if strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("the error shows the account key: %v", err)
	}
}

// An endpoint nothing listens on is reported when the store is opened.
func TestAzureUnreachable(t *testing.T) {
	addr := closedPort(t)
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", connString(addr))
	start := time.Now()
	_, err := objstore.Open(context.Background(), "az://c/p")
	wantUnreachable(t, err, addr)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("an unreachable endpoint took %s to report", el)
	}
}

// An endpoint that accepts connections but never answers: the call ends at
// its deadline, named as the endpoint that did not answer.
func TestAzureNoAnswer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	addr := l.Addr().String()
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", connString(addr))
	s, err := objstore.Open(context.Background(), "az://c/p")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = s.Stat(ctx, "x.json")
	wantUnreachable(t, err, addr)
}
