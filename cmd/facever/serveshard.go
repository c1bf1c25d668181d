package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/enroll"
)

// shardFlags reads serve's --shard and --shards: the part of the gallery
// this node indexes and the node of each shard identify asks.
func shardFlags(c *cli.Context) (enroll.Shard, []string, error) {
	var shard enroll.Shard
	if v := c.String("shard"); v != "" {
		var err error
		if shard, err = enroll.ParseShard(v); err != nil {
			return shard, nil, fmt.Errorf("--shard: %w", err)
		}
	}
	var shards []string
	if v := strings.TrimSpace(c.String("shards")); v != "" {
		for _, u := range strings.Split(v, ",") {
			shards = append(shards, strings.TrimSpace(u))
		}
	}
	switch {
	case shard.Sharded() && len(shards) == 0:
		return shard, nil, fmt.Errorf("--shard %s keeps part of the gallery: give --shards, the URL of a node of each of the %d shards (self for this one), so that identify searches the whole gallery", shard, shard.Count)
	case shard.Sharded() && len(shards) != shard.Count:
		return shard, nil, fmt.Errorf("--shard %s: --shards names %d nodes, want one per shard (%d)", shard, len(shards), shard.Count)
	}
	return shard, shards, nil
}
