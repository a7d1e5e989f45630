package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// wideColumns is the number of columns of wideRow.
const wideColumns = 41

// wideRow is a row of the wide file: the 37 columns of a warehouse tracks
// file with its integrations columns, in the generator's order, and four
// more a wider tracks table carries, which the job does not read. The types are
// the warehouse ones: TIMESTAMP(MICROS, UTC), INT64, BOOLEAN, dictionary
// strings for the low-cardinality columns.
type wideRow struct {
	ID                        string     `parquet:"id"`
	ReceivedAt                *time.Time `parquet:"received_at,optional,timestamp(microsecond)"`
	SentAt                    *time.Time `parquet:"sent_at,optional,timestamp(microsecond)"`
	OriginalTimestamp         *time.Time `parquet:"original_timestamp,optional,timestamp(microsecond)"`
	Timestamp                 *time.Time `parquet:"timestamp,optional,timestamp(microsecond)"`
	UserID                    string     `parquet:"user_id,optional"`
	AnonymousID               string     `parquet:"anonymous_id,optional"`
	Event                     string     `parquet:"event,optional,dict"`
	EventText                 string     `parquet:"event_text,optional,dict"`
	ContextDeviceID           string     `parquet:"context_device_id,optional"`
	ContextDeviceType         string     `parquet:"context_device_type,optional,dict"`
	ContextDeviceModel        string     `parquet:"context_device_model,optional,dict"`
	ContextDeviceManufacturer string     `parquet:"context_device_manufacturer,optional,dict"`
	ContextIP                 string     `parquet:"context_ip,optional"`
	ContextUserAgent          string     `parquet:"context_user_agent,optional,dict"`
	ContextLibraryName        string     `parquet:"context_library_name,optional,dict"`
	ContextLibraryVersion     string     `parquet:"context_library_version,optional,dict"`
	ContextOSName             string     `parquet:"context_os_name,optional,dict"`
	ContextOSVersion          string     `parquet:"context_os_version,optional,dict"`
	ContextAppName            string     `parquet:"context_app_name,optional,dict"`
	ContextAppVersion         string     `parquet:"context_app_version,optional,dict"`
	ContextAppBuild           string     `parquet:"context_app_build,optional,dict"`
	ContextLocale             string     `parquet:"context_locale,optional,dict"`
	ContextTimezone           string     `parquet:"context_timezone,optional,dict"`
	ContextScreenWidth        *int64     `parquet:"context_screen_width,optional"`
	ContextScreenHeight       *int64     `parquet:"context_screen_height,optional"`
	ContextNetworkWifi        *bool      `parquet:"context_network_wifi,optional"`
	ContextNetworkCarrier     string     `parquet:"context_network_carrier,optional,dict"`
	ContextCampaignSource     string     `parquet:"context_campaign_source,optional,dict"`
	ContextCampaignMedium     string     `parquet:"context_campaign_medium,optional,dict"`
	ContextCampaignName       string     `parquet:"context_campaign_name,optional,dict"`
	ContextPagePath           string     `parquet:"context_page_path,optional"`
	ContextPageURL            string     `parquet:"context_page_url,optional"`
	ContextPageReferrer       string     `parquet:"context_page_referrer,optional,dict"`
	ContextPageTitle          string     `parquet:"context_page_title,optional,dict"`
	UUIDTs                    *time.Time `parquet:"uuid_ts,optional,timestamp(microsecond)"`
	IntegrationsAll           *bool      `parquet:"integrations_all,optional"`
	IntegrationsConvertro     *bool      `parquet:"integrations_convertro,optional"`
	ContextPageSearch         string     `parquet:"context_page_search,optional,dict"`
	ContextTraitsPlan         string     `parquet:"context_traits_plan,optional,dict"`
	ContextGroupID            string     `parquet:"context_group_id,optional,dict"`
}

// wideDir writes the wide file as the single file of a tracks table,
// <work>/wide-.../tracks/day=YYYY-MM-DD/000000000000.parquet, once while
// its parameters hold.
func wideDir(ctx context.Context, c config) (string, error) {
	dir := filepath.Join(c.work, "exports", fmt.Sprintf("wide%d-%d-rg%d-seed%d", wideColumns, c.wideRows, c.wideRowGroupRows, c.seed))
	return dir, cached(dir, struct {
		Version                  int
		Rows, RowGroupRows, Cols int
		Seed                     int64
	}{1, c.wideRows, c.wideRowGroupRows, wideColumns, c.seed}, func() error {
		return writeWide(ctx, dir, c)
	})
}

// writeWide fills the wide file with the generator's tracks events of one
// day, repeated with fresh message ids when the day has fewer.
func writeWide(ctx context.Context, dir string, c config) error {
	// Tracks are 35% of the generator's rows.
	o := generate.Options{Rows: c.wideRows*100/35 + 1000, Seed: c.seed, Days: 1}
	path := filepath.Join(dir, "tracks", "day="+generate.DefaultStart.Format("2006-01-02"), "000000000000.parquet")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := parquet.NewGenericWriter[wideRow](f,
		parquet.MaxRowsPerRowGroup(int64(c.wideRowGroupRows)),
		parquet.Compression(&parquet.Snappy),
		parquet.PageBufferSize(1<<20),
	)
	batch := make([]wideRow, 0, 1024)
	flush := func() error {
		if _, err := w.Write(batch); err != nil {
			return err
		}
		batch = batch[:0]
		return ctx.Err()
	}
	written := 0
	for e := range generate.Events(o) {
		if e.Table != "tracks" {
			continue
		}
		if written+len(batch) == c.wideRows {
			break
		}
		batch = append(batch, toWide(&e))
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
			written += cap(batch)
		}
	}
	written += len(batch)
	if err := flush(); err != nil {
		return err
	}
	if written != c.wideRows {
		return fmt.Errorf("wide file: %d tracks rows generated, want %d", written, c.wideRows)
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

func toWide(e *generate.Event) wideRow {
	x := &e.Context
	return wideRow{
		ID: e.MessageID, ReceivedAt: timeOf(e.ReceivedAt), SentAt: timeOf(e.SentAt),
		OriginalTimestamp: timeOf(e.OriginalTimestamp), Timestamp: timeOf(e.Timestamp),
		UserID: e.UserID, AnonymousID: e.AnonymousID, Event: e.Event, EventText: e.EventText,
		ContextDeviceID: x.DeviceID, ContextDeviceType: x.DeviceType, ContextDeviceModel: x.DeviceModel,
		ContextDeviceManufacturer: x.DeviceManufacturer, ContextIP: x.IP, ContextUserAgent: x.UserAgent,
		ContextLibraryName: x.LibraryName, ContextLibraryVersion: x.LibraryVersion,
		ContextOSName: x.OSName, ContextOSVersion: x.OSVersion,
		ContextAppName: x.AppName, ContextAppVersion: x.AppVersion, ContextAppBuild: x.AppBuild,
		ContextLocale: x.Locale, ContextTimezone: x.Timezone,
		ContextScreenWidth: intOf(x.ScreenWidth), ContextScreenHeight: intOf(x.ScreenHeight),
		ContextNetworkWifi: boolOf(x.NetworkWifi), ContextNetworkCarrier: x.NetworkCarrier,
		ContextCampaignSource: x.CampaignSource, ContextCampaignMedium: x.CampaignMedium, ContextCampaignName: x.CampaignName,
		ContextPagePath: x.PagePath, ContextPageURL: x.PageURL, ContextPageReferrer: x.PageReferrer,
		ContextPageTitle: e.EventText + " - Shop", ContextPageSearch: prefixed("?utm_source=", x.CampaignSource),
		ContextTraitsPlan: plans[len(e.AnonymousID+e.UserID)%len(plans)], ContextGroupID: prefixed("g-", e.UserID[:min(6, len(e.UserID))]),
		UUIDTs:          timeOf(e.UUIDTs),
		IntegrationsAll: boolOf(e.IntegrationsAll), IntegrationsConvertro: boolOf(e.IntegrationsConvertro),
	}
}

func timeOf(t segment.Time) *time.Time {
	if !t.Valid {
		return nil
	}
	v := time.UnixMicro(t.Micros).UTC()
	return &v
}

func intOf(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func boolOf(b segment.Bool) *bool {
	if b == segment.Absent {
		return nil
	}
	v := b == segment.True
	return &v
}

var plans = []string{"free", "pro", "team"}

// prefixed is p+s, or NULL (empty) when s is.
func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
