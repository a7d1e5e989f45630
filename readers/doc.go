// Package readers owns object storage (local folders, file:// and gs://),
// listing with partition filters, and Parquet decoding with column resolution
// and type coercion into segment.Message values. It knows nothing of Convertro.
//
// (Sections on storage, decoding, errors and concurrency are written with the code.)
package readers
