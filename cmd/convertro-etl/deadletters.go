package main

import (
	"github.com/spf13/cobra"

	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/objstore"
)

func newDeadLettersCmd(env func() jobs.Env) *cobra.Command {
	var o jobs.DeadLetterListOptions
	cmd := &cobra.Command{
		Use:   "deadletters --state URI [--json] [--urls]",
		Short: "List a job's dead letters: the requests Convertro refused for good, with status and reason",
		Long: `Deadletters lists the dead letters the manifests in --state record, one line
each: shard, object, row group, row, status, reason and the start of
Convertro's answer (--json: one JSON object per line). The requests' URLs
hold personal data (device and user ids, IP address, user agent): they are
left out, and replaced by <url> in the reasons, unless --urls is given.
Dead-letter parts no manifest lists (stored by a run killed before it
committed them; their rows are sent again by the next run) are named on
stderr; replay deletes them.`,
		Example: `  convertro-etl deadletters --state gs://bucket/convertro-state
  convertro-etl deadletters --state ./.convertro-state --json | jq -r .class | sort | uniq -c`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return jobs.ListDeadLetters(cmd.Context(), o, env())
		},
	}
	cmd.Flags().StringVar(&o.State, "state", "./.convertro-state", "state location ("+objstore.Forms()+")")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "one JSON object per dead letter, one per line")
	cmd.Flags().BoolVar(&o.URLs, "urls", false, "print the requests' URLs (personal data)")
	return cmd
}
