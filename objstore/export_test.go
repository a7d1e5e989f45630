package objstore

import (
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
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
