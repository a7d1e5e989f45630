package main

import (
	"github.com/spf13/cobra"

	"github.com/convertro-etl/convertro-etl/jobs"
)

func newReplayCmd(env func() jobs.Env, lookup func(string) (string, bool)) *cobra.Command {
	var f *jobFlags
	cmd := &cobra.Command{
		Use:   "replay --state URI [--config job.yaml] [flags]",
		Short: "Send a job's dead-lettered requests again, with the current endpoint, client name and site id",
		Long: `Replay sends the dead letters recorded in --state again, re-aimed at the
endpoint (or domain), client name and site id given now, with the same client
flags as run (--concurrency, --rate, --timeout, --max-attempts). The requests
Convertro accepts now move from dead-lettered to delivered in the manifest and
are listed in replay-<i>-of-<n>-<time>.json; the others stay dead-lettered.
Exit code 0 when none remain, 2 when some do, 3 when a run holds the lease.`,
		Example: examples(
			"# after fixing the site id: the same job file, the corrected id",
			"convertro-etl replay --config job.yaml --site-id 13",
			"convertro-etl replay --state gs://acme-exports/state/nightly --client-name acme --site-id 12 --rate 50",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, _, err := f.options()
			if err != nil {
				return err
			}
			_, err = jobs.Replay(cmd.Context(), o, env())
			return err
		},
	}
	f = bindJobFlags(cmd.Flags(), jobs.CmdReplay, lookup)
	return cmd
}
