package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// az://container/prefix and abfss://container@account.dfs.core.windows.net/prefix:
// Azure Blob Storage through its Go SDK. An ADLS Gen2 location is read and
// written through the Blob API of the same account, which serves both.
// Versions are ETags, without their quotes (listings and headers quote them
// differently); conditional writes send If-None-Match: * or If-Match, which
// the service checks atomically, and every ranged read sends If-Match, so a
// reader never mixes the bytes of two versions.
//
// The account and its credentials come from the environment:
// AZURE_STORAGE_CONNECTION_STRING when it is set (account, key and endpoint:
// what Azurite is reached with), otherwise AZURE_STORAGE_ACCOUNT (or the
// abfss host's account) with DefaultAzureCredential, whose time is bounded
// so that a missing credential fails in seconds. One client is made per
// account per process, and is safe for concurrent use.
func init() {
	Register("az", openAzure)
	Register("abfss", openAzure)
}

const (
	azConnEnv    = "AZURE_STORAGE_CONNECTION_STRING"
	azAccountEnv = "AZURE_STORAGE_ACCOUNT"

	// azCredentialTimeout bounds one token request through the credential
	// chain: a chain that has nothing to offer answers in a second or two,
	// but a managed-identity endpoint that never answers would otherwise
	// hold the first call for minutes.
	azCredentialTimeout = 15 * time.Second
	// azBlockSize is the block of a staged upload; azSmallPut the largest
	// object sent in one request, with an MD5 the service checks.
	azBlockSize = 4 << 20
	azSmallPut  = azBlockSize
	// azUploadConcurrency blocks are staged at once: with azBlockSize,
	// 16 MiB of buffers per large upload.
	azUploadConcurrency = 4
)

// azureConfig is where one account's client comes from: read from the
// environment and the location, or given by a test.
type azureConfig struct {
	connString string // AZURE_STORAGE_CONNECTION_STRING; wins when set
	account    string // otherwise the account, used with a token credential
	accountVia string // what named the account, for messages
	endpoint   string // the blob service URL for account; "" is the public cloud's
	// credential makes the token credential; nil is DefaultAzureCredential.
	credential        func() (azcore.TokenCredential, error)
	credentialTimeout time.Duration // 0 is azCredentialTimeout
}

// key identifies the client a config makes, for the per-process cache.
func (c azureConfig) key() string {
	if c.connString != "" {
		return "conn\x00" + c.connString
	}
	return "account\x00" + c.account + "\x00" + c.endpoint
}

// azAccount is one account's client and how to name its endpoint.
type azAccount struct {
	client   *azblob.Client
	endpoint string // scheme://host of the blob service
	server   string // e.g. "Azure Blob endpoint (AZURE_STORAGE_CONNECTION_STRING)"
	fix      string // what to check when it cannot be reached
	denied   string // what to check when the service refuses the credentials
}

// azAccounts caches one client per account, failures included (as the GCS
// client is cached): a process makes its clients once.
var azAccounts = struct {
	sync.Mutex
	m map[string]func() (*azAccount, error)
}{m: map[string]func() (*azAccount, error){}}

func azureAccountFor(cfg azureConfig) (*azAccount, error) {
	k := cfg.key()
	azAccounts.Lock()
	get, ok := azAccounts.m[k]
	if !ok {
		get = sync.OnceValues(func() (*azAccount, error) { return newAzureAccount(context.Background(), cfg) })
		azAccounts.m[k] = get
	}
	azAccounts.Unlock()
	return get()
}

// errNoAzureAccount: neither variable is set, so there is nothing to try.
var errNoAzureAccount = errors.New("no Azure storage account: set " + azConnEnv + " (account, key and endpoint), or " +
	azAccountEnv + " and sign in with `az login` (or a managed identity or service principal that DefaultAzureCredential finds)")

// azureCredentialError is a token the credential chain could not give; it
// says what fixes it.
type azureCredentialError struct{ err error }

func (e *azureCredentialError) Error() string {
	return fmt.Sprintf("no Azure credentials: %v; set %s, or keep %s and sign in with `az login` "+
		"(or give a managed identity, or AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET)", e.err, azConnEnv, azAccountEnv)
}

func (e *azureCredentialError) Unwrap() error { return e.err }

// boundedCredential gives up on a token after timeout, even if the chain
// behind it ignores its context.
type boundedCredential struct {
	cred    azcore.TokenCredential
	timeout time.Duration
}

func (b boundedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	type result struct {
		tok azcore.AccessToken
		err error
	}
	ch := make(chan result, 1)
	go func() {
		tok, err := b.cred.GetToken(tctx, opts)
		ch <- result{tok, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && ctx.Err() == nil {
			return r.tok, &azureCredentialError{r.err}
		}
		return r.tok, r.err
	case <-tctx.Done():
		if err := ctx.Err(); err != nil {
			return azcore.AccessToken{}, err // the caller gave up: not the credential's fault
		}
		return azcore.AccessToken{}, &azureCredentialError{fmt.Errorf("the credential chain gave no token within %s", b.timeout)}
	}
}

// azStorageScope is the token audience of Azure Storage.
const azStorageScope = "https://storage.azure.com/.default"

// newAzureAccount makes a client whose own retries stay within RetryFor,
// checks the credential once (so that a missing one is reported at open,
// not at the first read), and probes the endpoint.
func newAzureAccount(ctx context.Context, cfg azureConfig) (*azAccount, error) {
	opts := &azblob.ClientOptions{ClientOptions: policy.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: 4, RetryDelay: 250 * time.Millisecond, MaxRetryDelay: 5 * time.Second},
	}}
	a := &azAccount{}
	switch {
	case cfg.connString != "":
		c, err := azblob.NewClientFromConnectionString(cfg.connString, opts)
		if err != nil {
			return nil, fmt.Errorf("create Azure Blob client from %s: %w", azConnEnv, err)
		}
		a.client = c
		a.server = "Azure Blob endpoint (" + azConnEnv + ")"
		a.fix = "start the emulator, or correct BlobEndpoint or AccountName in " + azConnEnv +
			" (unset it to use " + azAccountEnv + " with `az login`)"
		a.denied = "check AccountKey (or SharedAccessSignature) in " + azConnEnv
	case cfg.account != "":
		endpoint := cfg.endpoint
		if endpoint == "" {
			endpoint = "https://" + cfg.account + ".blob.core.windows.net/"
		}
		newCred := cfg.credential
		if newCred == nil {
			newCred = func() (azcore.TokenCredential, error) { return azidentity.NewDefaultAzureCredential(nil) }
		}
		timeout := cfg.credentialTimeout
		if timeout == 0 {
			timeout = azCredentialTimeout
		}
		inner, err := newCred()
		if err != nil {
			return nil, fmt.Errorf("create Azure Blob client: %w", &azureCredentialError{err})
		}
		cred := boundedCredential{cred: inner, timeout: timeout}
		if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{azStorageScope}}); err != nil {
			return nil, fmt.Errorf("create Azure Blob client for account %s (%s): %w", cfg.account, cfg.accountVia, err)
		}
		c, err := azblob.NewClient(endpoint, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("create Azure Blob client: %w", err)
		}
		a.client = c
		a.server = "Azure Blob endpoint (" + cfg.accountVia + ")"
		a.fix = "check the account name"
		if cfg.accountVia == azAccountEnv {
			a.fix += ", " + azAccountEnv + currentValue(azAccountEnv)
		}
		a.fix += ", and the network path to it (proxy, firewall, DNS)"
		a.denied = "give the signed-in identity a role on the account or container " +
			"(Storage Blob Data Reader to read, Storage Blob Data Contributor to write)"
	default:
		return nil, errNoAzureAccount
	}
	u, err := url.Parse(a.client.URL())
	if err != nil {
		return nil, fmt.Errorf("create Azure Blob client: %w", err)
	}
	a.endpoint = u.Scheme + "://" + u.Host
	if err := probe(ctx, a.endpoint, a.server, a.fix); err != nil {
		return nil, fmt.Errorf("create Azure Blob client: %w", err)
	}
	return a, nil
}

// connAccount is the AccountName of a connection string, "" if it has none
// (a SAS connection string names only endpoints).
func connAccount(conn string) string {
	for _, part := range strings.Split(conn, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "AccountName") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type azBackend struct {
	acct      *azAccount
	container *container.Client
	base      string // the URI of the container, up to and without the "/"
	prefix    string // "" or ends with "/"
}

// openAzure reads az://container/prefix with the account of the
// environment, and abfss://container@account.dfs.<cloud suffix>/prefix
// through the blob endpoint of the account it names (Parse leaves
// "container@host" in Bucket).
func openAzure(ctx context.Context, loc Location) (Backend, error) {
	cfg := azureConfig{connString: os.Getenv(azConnEnv), account: os.Getenv(azAccountEnv), accountVia: azAccountEnv}
	name, base := loc.Bucket, loc.Scheme+"://"+loc.Bucket
	if loc.Scheme == "abfss" {
		c, host, ok := strings.Cut(loc.Bucket, "@")
		account, suffix, dfs := strings.Cut(host, ".dfs.")
		if !ok || c == "" || !dfs || account == "" || suffix == "" {
			return nil, fmt.Errorf("an abfss location is abfss://<container>@<account>.dfs.core.windows.net/<path>, not %q", loc.Raw)
		}
		name = c
		if cfg.connString != "" {
			if ca := connAccount(cfg.connString); ca != "" && ca != account {
				return nil, fmt.Errorf("the location names account %s but %s is for account %s: "+
					"unset it to sign in to %s (`az login`), or name az://%s/ to use it", account, azConnEnv, ca, account, c)
			}
		} else {
			cfg.account, cfg.accountVia = account, "the account of the abfss location"
			cfg.endpoint = "https://" + account + ".blob." + suffix + "/"
		}
	}
	return newAzureBackend(cfg, name, base, loc.Path)
}

func newAzureBackend(cfg azureConfig, containerName, base, prefix string) (*azBackend, error) {
	a, err := azureAccountFor(cfg)
	if err != nil {
		return nil, err
	}
	return &azBackend{
		acct:      a,
		container: a.client.ServiceClient().NewContainerClient(containerName),
		base:      base,
		prefix:    folder(prefix),
	}, nil
}

func (z *azBackend) URI(key string) string  { return z.base + "/" + z.prefix + key }
func (z *azBackend) Name(key string) string { return z.prefix + key }

func (z *azBackend) As(target any) bool {
	switch t := target.(type) {
	case **azblob.Client:
		*t = z.acct.client
		return true
	case **container.Client:
		*t = z.container
		return true
	}
	return false
}

func (z *azBackend) blob(key string) *blockblob.Client {
	return z.container.NewBlockBlobClient(z.prefix + key)
}

// azVersion is an ETag without its quotes: the listing's XML and the
// response headers do not agree on them.
func azVersion(e *azcore.ETag) string {
	if e == nil {
		return ""
	}
	s := string(*e)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return s
}

// azETag is the If-Match value that names version.
func azETag(version string) *azcore.ETag {
	e := azcore.ETag(`"` + version + `"`)
	return &e
}

func ifMatch(version string) *blob.AccessConditions {
	return &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: azETag(version)}}
}

// azDirectory reports whether a blob is the marker of a directory of an
// account with a hierarchical namespace (ADLS Gen2), which the Blob API
// shows as an empty blob: a folder, not an object.
func azDirectory(meta map[string]*string) bool {
	for k, v := range meta {
		if strings.EqualFold(k, "hdi_isfolder") && v != nil && strings.EqualFold(*v, "true") {
			return true
		}
	}
	return false
}

var errAzDirectory = fmt.Errorf("%w: a directory, not an object", ErrNotFound)

// List reads the flat listing page by page; it ends if no page arrives for
// StallTimeout, however long the whole listing takes.
func (z *azBackend) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	wctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	pager := z.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix:     ptr(z.prefix + prefix),
		MaxResults: ptr(ListPageSize.Load()),
		Include:    container.ListBlobsInclude{Metadata: true},
	})
	for pager.More() {
		page, err := pager.NextPage(wctx)
		if err != nil {
			return z.err(wctx, err)
		}
		touch()
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil || it.Properties == nil || azDirectory(it.Metadata) {
				continue
			}
			a := Attrs{Key: strings.TrimPrefix(*it.Name, z.prefix), Version: azVersion(it.Properties.ETag)}
			if it.Properties.ContentLength != nil {
				a.Size = *it.Properties.ContentLength
			}
			if err := fn(a); err != nil {
				return err
			}
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func (z *azBackend) Stat(ctx context.Context, key string) (Attrs, error) {
	return z.stat(ctx, key, "")
}

// stat gets key's properties; with version, only if it is still current.
func (z *azBackend) stat(ctx context.Context, key, version string) (Attrs, error) {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	var opts *blob.GetPropertiesOptions
	if version != "" {
		opts = &blob.GetPropertiesOptions{AccessConditions: ifMatch(version)}
	}
	p, err := z.blob(key).GetProperties(ctx, opts)
	if err != nil {
		return Attrs{}, z.readErr(ctx, err, version)
	}
	if azDirectory(p.Metadata) {
		return Attrs{}, errAzDirectory
	}
	a := Attrs{Key: key, Version: azVersion(p.ETag)}
	if p.ContentLength != nil {
		a.Size = *p.ContentLength
	}
	return a, nil
}

// Open pins version, or the current ETag when version is "": one
// properties request, then If-Match on every range.
func (z *azBackend) Open(ctx context.Context, key, version string) (Reader, Attrs, error) {
	if key == "" {
		return nil, Attrs{}, errors.New("empty key")
	}
	a, err := z.stat(ctx, key, version)
	if err != nil {
		return nil, Attrs{}, err
	}
	return &azReader{ctx: ctx, z: z, blob: z.blob(key), size: a.Size, version: a.Version}, a, nil
}

// OpenListed pins the listed ETag with no request: every read is
// conditional on it.
func (z *azBackend) OpenListed(ctx context.Context, key string, a Attrs) (Reader, error) {
	return &azReader{ctx: ctx, z: z, blob: z.blob(key), size: a.Size, version: a.Version}, nil
}

// azReader reads one ETag by ranges: one ranged GET per ReadAt.
type azReader struct {
	ctx     context.Context // the Open context: io.ReaderAt has no ctx slot
	z       *azBackend
	blob    *blockblob.Client
	size    int64
	version string
}

// ReadAt ends if the range stops arriving for StallTimeout. A range past
// the pinned size is read short (the caller reports a change); a version
// replaced since Open is ErrNotFound.
func (r *azReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size || len(p) == 0 {
		return 0, nil
	}
	n := min(int64(len(p)), r.size-off)
	ctx, touch, stop := Watchdog(r.ctx, StallTimeout)
	defer stop()
	resp, err := r.blob.DownloadStream(ctx, &blob.DownloadStreamOptions{
		Range:            blob.HTTPRange{Offset: off, Count: n},
		AccessConditions: ifMatch(r.version),
	})
	if err != nil {
		return 0, r.z.readErr(ctx, err, r.version)
	}
	defer resp.Body.Close()
	got, err := io.ReadFull(TouchReader{R: resp.Body, Touch: touch}, p[:n])
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // short: the caller reports a change
	}
	return got, r.z.err(ctx, err)
}

// Version is the pinned ETag: it cannot change under the reader.
func (r *azReader) Version() (int64, string, error) { return r.size, r.version, nil }
func (r *azReader) Close() error                    { return nil }

// Get reads the whole object; it ends if the bytes stop coming for
// StallTimeout, whatever the object's size. A connection cut in the middle
// is resumed (three times at most) at the same ETag.
func (z *azBackend) Get(ctx context.Context, key string, w io.Writer) (string, error) {
	ctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	resp, err := z.blob(key).DownloadStream(ctx, nil)
	if err != nil {
		return "", z.readErr(ctx, err, "")
	}
	body := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3})
	defer body.Close()
	if azDirectory(resp.Metadata) {
		return "", errAzDirectory
	}
	if _, err := io.Copy(w, TouchReader{R: body, Touch: touch}); err != nil {
		return "", z.readErr(ctx, err, "")
	}
	return azVersion(resp.ETag), nil
}

// Put sends an object of up to azSmallPut bytes in one request with its
// MD5, and a larger one as staged blocks committed under the precondition:
// the service checks it on the commit, so a refused or abandoned upload
// leaves the current object as it was (uncommitted blocks expire).
func (z *azBackend) Put(ctx context.Context, key string, r io.Reader, size int64, pre Precondition) (string, error) {
	cond := &blob.ModifiedAccessConditions{}
	switch {
	case pre.Absent():
		cond.IfNoneMatch = ptr(azcore.ETagAny)
	case !pre.Any():
		cond.IfMatch = azETag(pre.Version())
	}
	access := &blob.AccessConditions{ModifiedAccessConditions: cond}
	var headers *blob.HTTPHeaders
	if strings.HasSuffix(key, ".json") {
		headers = &blob.HTTPHeaders{BlobContentType: ptr("application/json")}
	}
	ctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	bb := z.blob(key)
	body := &exactReader{r: TouchReader{R: r, Touch: touch}, left: size}
	var etag *azcore.ETag
	if size <= azSmallPut {
		data, err := io.ReadAll(body)
		if err != nil {
			return "", err
		}
		sum := md5.Sum(data)
		resp, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), &blockblob.UploadOptions{
			HTTPHeaders:             headers,
			AccessConditions:        access,
			TransactionalValidation: blob.TransferValidationTypeMD5(sum[:]),
		})
		if err != nil {
			return "", z.writeErr(ctx, err, pre)
		}
		etag = resp.ETag
	} else {
		resp, err := bb.UploadStream(ctx, body, &blockblob.UploadStreamOptions{
			BlockSize:        azBlockSize,
			Concurrency:      azUploadConcurrency,
			HTTPHeaders:      headers,
			AccessConditions: access,
		})
		if err != nil {
			if body.err != nil {
				return "", body.err
			}
			return "", z.writeErr(ctx, err, pre)
		}
		etag = resp.ETag
	}
	return azVersion(etag), nil
}

// exactReader ends with an error, not EOF, when r has fewer than left
// bytes, so that a file that shrank is not committed short.
type exactReader struct {
	r    io.Reader
	left int64
	err  error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		e.err = fmt.Errorf("the body ended %d bytes short of its size", e.left)
		err = e.err
	}
	return n, err
}

func (z *azBackend) Delete(ctx context.Context, key string) error {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	_, err := z.blob(key).Delete(ctx, &blob.DeleteOptions{DeleteSnapshots: ptr(blob.DeleteSnapshotsOptionTypeInclude)})
	return z.err(ctx, err)
}

// readErr maps a read's error: a failed If-Match means the version asked
// for, or the one being read, is gone.
func (z *azBackend) readErr(ctx context.Context, err error, version string) error {
	if azStatus(err) == http.StatusPreconditionFailed {
		if version == "" {
			return fmt.Errorf("%w: replaced while it was read (%w)", ErrNotFound, azAnswer(err))
		}
		return fmt.Errorf("%w: version %s was replaced (%w)", ErrNotFound, version, azAnswer(err))
	}
	return z.err(ctx, err)
}

// writeErr maps a conditional write's error: an object where none was
// expected, or another version than the one given, is ErrPrecondition; so
// is a missing object when a version was required.
func (z *azBackend) writeErr(ctx context.Context, err error, pre Precondition) error {
	switch {
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists) && pre.Absent():
		return fmt.Errorf("%w (%w)", ErrPrecondition, azAnswer(err))
	case bloberror.HasCode(err, bloberror.BlobNotFound) && pre.Version() != "":
		return fmt.Errorf("%w: no object (%w)", ErrPrecondition, azAnswer(err))
	}
	return z.err(ctx, err)
}

func azStatus(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// azServiceError is the service's answer in one line: the SDK's own
// message spans a dozen, with the request's URL, which the Store names
// anyway. The SDK's error stays in the chain.
type azServiceError struct{ re *azcore.ResponseError }

func (e azServiceError) Error() string {
	s := fmt.Sprintf("Azure answered %d", e.re.StatusCode)
	if e.re.RawResponse != nil && e.re.RawResponse.Status != "" {
		s = "Azure answered " + e.re.RawResponse.Status
	}
	if e.re.ErrorCode != "" {
		s += " (" + e.re.ErrorCode + ")"
	}
	return s
}

func (e azServiceError) Unwrap() error { return e.re }

// azAnswer is err in one line when it is the service's answer.
func azAnswer(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return azServiceError{re}
	}
	return err
}

// err maps the SDK's errors to the kinds, keeping the original in the
// chain; an endpoint that cannot be reached becomes an *UnreachableError
// that names it. ctx is the call's, whose cause says why it ended.
func (z *azBackend) err(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ce *azureCredentialError
	if errors.As(err, &ce) {
		return z.explain(ctx, ce) // its message says what to do
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		err = azServiceError{re}
		switch code := re.StatusCode; {
		case code == http.StatusNotFound:
			return fmt.Errorf("%w (%w)", ErrNotFound, err)
		case code == http.StatusPreconditionFailed:
			return fmt.Errorf("%w (%w)", ErrPrecondition, err)
		case code == http.StatusForbidden || code == http.StatusUnauthorized:
			return fmt.Errorf("%w; %s", err, z.acct.denied)
		case statusTransient(code):
			return Transient(err)
		}
		return err
	}
	// The SDK's retry policy returns a bare context error when the
	// deadline ends a request: name the endpoint it was sent to.
	if innermostURLError(err) == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		err = &url.Error{Op: "call", URL: z.acct.client.URL(), Err: err}
	}
	return z.explain(ctx, err)
}

// explain names the server a failed call could not reach: the blob
// endpoint, or else the credentials' token server.
func (z *azBackend) explain(ctx context.Context, err error) error {
	return explainUnreachable(ctx, err, func(u *url.URL) (string, string) {
		if u.Scheme+"://"+u.Host == z.acct.endpoint {
			return z.acct.server, z.acct.fix
		}
		return "Azure credentials token server", "run `az login`, or check the managed identity or AZURE_CLIENT_ID and AZURE_TENANT_ID; or set " + azConnEnv
	})
}
