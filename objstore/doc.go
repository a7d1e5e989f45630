// Package objstore is the one storage layer of the job: the sources it
// reads and the state it keeps (manifests, leases, reports, dead letters)
// live on local disk, in Google Cloud Storage (gs://bucket/prefix), in
// Amazon S3 or a server that speaks its API (s3://bucket/prefix), or in
// Azure Blob Storage (az://container/prefix, and ADLS Gen2 as
// abfss://container@account.dfs.core.windows.net/prefix). Each service is
// one Backend, registered by its URL scheme (Register); a bare path or
// file:///path is local disk. Open parses a location and opens it as a
// Store, rooted at a folder: keys are slash-separated names below it.
//
// # What the Store does for every backend
//
// A Backend only talks to its service. The Store adds, once for all of
// them:
//
//   - names checked (CheckKey): no key leaves the root;
//   - errors wrapped once, with the operation and the object's URI
//     ("write s3://b/state/manifest.json: version precondition failed
//     (...)"); backends never name the object;
//   - every write made under its Precondition (IfAbsent, IfVersion or
//     Overwrite) and retried with backoff on a transient failure until the
//     context's deadline (WriteRetryFor without one): under its
//     precondition a write is idempotent, and an attempt whose answer was
//     lost but which landed is recognised by reading the object back;
//   - writes to one name paced to one a second per process
//     (MinWriteInterval), the rate GCS allows, on every backend alike.
//
// Reads are pinned: Open returns a Reader of one version (a GCS
// generation, an S3 or Azure ETag sent as If-Match on every range), so a
// decoder never mixes the bytes of two versions. Local disk cannot pin: its
// Reader keeps the opened file, which a write replaces by a rename without
// touching it, and its Version re-reads the file's size and time, so that
// a file rewritten in place is noticed. Store.OpenListed pins the version a
// listing gave without a request, on the backends that can (ListedOpener):
// a version gone since fails the first read instead of the open.
//
// # Errors
//
// Callers test kinds with errors.Is and errors.As, never strings, HTTP
// codes or SDK types:
//
//   - ErrNotFound: the object, bucket or container does not exist (or the
//     pinned version is gone);
//   - ErrPrecondition: a conditional write found another version than the
//     one it was given, or an object where none was expected, on every
//     backend, whatever status the service answered with;
//   - ErrUnsupported: no backend is registered for the location's scheme;
//   - *UnreachableError: a server the call needed (the storage endpoint,
//     an emulator, a credentials or token server) could not be reached or
//     did not answer in time; it names the server and what to check.
//
// A backend marks an answer worth another attempt with Transient; the
// Store retries those and returns the last one. Callers outside this
// package see no SDK type: Backend.As (and Store.As) hands out a native
// client to one that truly needs it, and NewGCSClient and RouteGCSBucket
// serve tests that run a GCS server of their own.
//
// # Credentials
//
// Each backend takes its service's own configuration, with no flag of
// ours: GCS uses Application Default Credentials (STORAGE_EMULATOR_HOST
// points it at an emulator); S3 uses the AWS configuration chain
// (environment, AWS_PROFILE, web identity, instance role;
// AWS_ENDPOINT_URL_S3 names another server); Azure uses
// AZURE_STORAGE_CONNECTION_STRING, or else AZURE_STORAGE_ACCOUNT (or the
// abfss host's account) with DefaultAzureCredential; local disk uses the
// process's file permissions (files and folders are created as the user's
// umask says). A missing or refused credential fails the first call in
// seconds with what provides it.
//
// # Concurrency
//
// A Store, every Backend and every Reader are safe for concurrent use. One
// client per service (per Azure account) is made per process, on first
// use. Writes to one name wait for one another (see MinWriteInterval);
// two processes writing one name are fenced by the conditional writes.
//
// # Why our own interface and not gocloud.dev/blob
//
// gocloud.dev/blob (v0.49.0) was weighed against this package: its
// drivers gcsblob, s3blob, azureblob, fileblob and memblob cover our
// services, and its drivertest suite is the model of objstoretest. We
// kept a thin interface over the native SDKs for two reasons, measured
// and checked in objstore/internal/gocloudbench, a module of its own so
// that gocloud.dev never enters go.mod (make bench-gocloud).
//
// Conditional writes. Create-if-absent is portable
// (WriterOptions.IfNotExist), and its refusal is gcerrors.FailedPrecondition
// on every driver. Replace-if-version, which the lease and the checkpoint
// manifest are built on, is not: it takes a WriterOptions.BeforeWrite hook
// written against each driver's native type, a **storage.ObjectHandle to
// replace with .If(storage.Conditions{GenerationMatch: g}) on GCS, the
// *transfermanager.UploadObjectInput whose IfMatch to set on S3 (s3blob
// writes through the S3 transfer manager, not PutObject), and the
// *azblob.UploadStreamOptions whose AccessConditions to set on Azure;
// fileblob offers only its temporary *os.File and memblob nothing, so
// neither can express it at all. The refusals are not portable either: a
// stale version is FailedPrecondition on all three, but a version on a
// name that holds nothing is NotFound on S3 (404 NoSuchKey), and S3's 409
// ConditionalRequestConflict, which asks for the write again, is Unknown.
// blob.Writer does not return the version it wrote: gcsblob's hook can
// take the native *storage.Writer and read its generation after Close,
// but s3blob and azureblob drop the upload's answer, ETag included, so a
// lease could learn its new version only by reading the object back.
// fileblob checks IfNotExist with a Stat under a mutex of its process
// before the rename, so two processes sharing a state folder can both
// pass it; the local backend here takes a lock file for the check and
// the rename. Pinned reads, likewise, take a BeforeRead hook per driver
// (the generation on a **storage.ObjectHandle, IfMatch on the
// *s3.GetObjectInput, AccessConditions on the *blob.DownloadStreamOptions),
// and blob.Attributes carries a GCS object's ETag, not its generation
// (that is in the storage.ObjectAttrs behind As). TestConditionalWrites
// in that module runs each of these against the emulators.
//
// Reads. The decoder's reads were measured both ways in one run: a 30 MiB
// object per backend, 256 KiB reads at scattered offsets (one read an
// operation) and a Parquet-shaped file read (the size, 4 magic bytes, a
// 256 KiB tail, then 10 of 16 column chunks of 4 row groups in 256 KiB
// pieces: 20.1 MiB in 107 requests an operation). Ours went through
// Store.Open, then ReadAt and Version for each range, as the readers
// package reads; gocloud's through Bucket.Attributes and one
// Bucket.NewRangeReader a range, unpinned (gocloud) and pinned with the
// hooks above (gocloud-pinned). The servers were fake-gcs-server,
// versitygw and Azurite, reached through the emulators' in-process proxy,
// and local disk. gocloud's GCS bucket was opened with the JSON reads this
// package uses: gcsblob's URL opener reads through the XML API, which
// fake-gcs-server answers "object doesn't exist". Both sides used the same
// SDK versions. Six runs, each a new process taking the ways of reading in
// the other order than the last (`make bench-gocloud`; benchstat medians,
// ± the 95% interval), on a 2-core machine shared with other builds (load
// average 14 to 20):
//
//	                  objstore                  gocloud                   gocloud-pinned
//	                  throughput      allocs    throughput      allocs    throughput      allocs
//	local scattered   5.78 GiB/s ±44%      2    1.34 GiB/s ±80%     36    -
//	local parquet     6.32 GiB/s ±27%    219    1.55 GiB/s ±50%  3,847    -
//	gcs scattered     180 MiB/s ±76%     357    280 MiB/s ±45%     331    244 MiB/s ±52%     346
//	gcs parquet       179 MiB/s ±65%   38.3k    191 MiB/s ±60%   35.5k    227 MiB/s ±60%   37.1k
//	s3 scattered      63.4 MiB/s ±50%    713    46.5 MiB/s ±91%    671    64.1 MiB/s ±35%    688
//	s3 parquet        64.5 MiB/s ±59%  76.2k    52.3 MiB/s ±58%  71.9k    45.0 MiB/s ±52%  73.5k
//	azure scattered   34.2 MiB/s ±60%    353    31.1 MiB/s ±45%    361    29.0 MiB/s ±44%    371
//	azure parquet     28.2 MiB/s ±37%  37.9k    16.5 MiB/s ±196% 38.8k    16.9 MiB/s ±92%  39.8k
//
// Allocations are per operation and moved by at most one between runs;
// each way made the same requests. On the emulators no throughput
// difference is significant (the smallest benchstat p is 0.09): the
// emulator and the network stack decide. Allocations differ by -7% to +5%:
// a bare net/http ranged GET of the GCS emulator through the same proxy
// makes 186, this package's GCS read 357 and gocloud's 331; the difference
// is this package's stall watchdog (about 9 a read) and the instrumented
// HTTP transport storage.NewClient builds, which gcsblob replaces with a
// client of its own. On local disk gocloud takes 4.2 times as long for a
// scattered read (182.6 against 43.2 µs, p = 0.002) and 4.0 times for a
// file (12.67 against 3.14 ms), with 36 allocations a read where ours
// makes 2 (Version's fstat, which notices a file rewritten in place): for
// every range reader fileblob stats the file, looks for its attributes
// file and opens it, where a Reader keeps the file open.
//
// So gocloud would cost nothing measurable on the remote read path and
// four times on local disk, and would take, for what the state needs, a
// hook per driver on native types, per-driver error codes and a read-back
// after every lease write: the escape hatches would be most of the code. A
// thin Backend over each SDK states these once, and objstoretest holds
// every backend to them.
package objstore
