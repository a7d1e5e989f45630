//go:build deps

// Package internal pins dependencies until the code imports them; removed once it does.
package internal

import (
	_ "cloud.google.com/go/storage"
	_ "github.com/apache/arrow-go/v18/parquet/file"
	_ "github.com/fsouza/fake-gcs-server/fakestorage"
	_ "github.com/goccy/go-yaml"
	_ "github.com/parquet-go/parquet-go"
	_ "github.com/prometheus/client_golang/prometheus/push"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
	_ "golang.org/x/time/rate"
	_ "google.golang.org/api/option"
)
