package objstoretest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// AzuriteAccount is the storage account the Azurite started by Azure
// serves; an abfss location names it as <container>@AzuriteAccount.dfs.core.windows.net.
const AzuriteAccount = "convertroetl"

// azuriteKey is the account's key, made up per process: Azurite accepts
// any account and key it is started with (AZURITE_ACCOUNTS).
var azuriteKey = sync.OnceValue(func() string {
	var k [32]byte
	rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
})

// Azure starts Azurite's blob service (once), points this process's Azure
// clients at it through AZURE_STORAGE_CONNECTION_STRING, creates a new
// container and returns its URI, az://<container>. Child processes that
// inherit the environment use it too.
//
// Azurite is started with --skipApiVersionCheck because the SDK speaks a
// newer service version than Azurite 3.37.0 knows (2026-12-06 against
// 2026-06-06); the requests the backend makes are the same in both.
func Azure(t testing.TB) string {
	t.Helper()
	bin := Binary(t, "azurite/node_modules/.bin/azurite-blob")
	e := start(t, "azure", bin, func(port, dir string) []string {
		return []string{"--blobHost", "127.0.0.1", "--blobPort", port, "--location", dir,
			"--silent", "--skipApiVersionCheck", "--disableTelemetry"}
	}, func(addr string) bool { return httpReady("http://" + addr + "/") },
		"AZURITE_ACCOUNTS="+AzuriteAccount+":"+azuriteKey())
	conn := fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://%s/%s;",
		AzuriteAccount, azuriteKey(), e.addr, AzuriteAccount)
	if os.Getenv("AZURE_STORAGE_CONNECTION_STRING") != conn {
		if err := os.Setenv("AZURE_STORAGE_CONNECTION_STRING", conn); err != nil {
			t.Fatal(err)
		}
	}
	c, err := azblob.NewClientFromConnectionString(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("c")
	if _, err := c.CreateContainer(context.Background(), name, nil); err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	return "az://" + name
}
