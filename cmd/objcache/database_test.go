package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/loader"
)

// TestDatabaseSettingsReachTheLoader: three cold ids asked 100ms apart on
// three connections are three queries by default, one with a 1s batch
// window; asked at once, they are three queries with max_batch 1.
func TestDatabaseSettingsReachTheLoader(t *testing.T) {
	for _, tc := range []struct {
		name, database string
		apart          bool // ask the ids 100ms apart, else in one get
		queries        string
	}{
		{"the default window", "", true, "3"},
		{"a 1s window", "database: {batch_window: 1s}\n", true, "1"},
		{"max_batch 1", "database: {max_batch: 1}\n", false, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startFromFile(t, tc.database+"models:\n  User: {table: users, key: id}\n")
			if tc.apart {
				var cs []*testsupport.Conn
				for _, key := range []string{"User:1", "User:2", "User:3"} {
					c := testsupport.Dial(t, o.addr)
					c.Send("get " + key + "\r\n")
					cs = append(cs, c)
					time.Sleep(100 * time.Millisecond)
				}
				for _, c := range cs {
					for c.ReadLine() != "END" {
					}
				}
			} else {
				c := testsupport.Dial(t, o.addr)
				c.Send("get User:1 User:2 User:3\r\n")
				for c.ReadLine() != "END" {
				}
			}
			if got := stats(testsupport.Dial(t, o.addr))["db_queries"]; got != tc.queries {
				t.Errorf("db_queries = %s, want %s", got, tc.queries)
			}
		})
	}
}

func TestLoaderConfigCarriesTheDatabaseSettings(t *testing.T) {
	c, err := newServeFlags().load([]string{"--backends", "127.0.0.1:11211", "--postgres", "postgres://x",
		"--database-batch-window", "1ms", "--database-max-batch", "50", "--database-max-conns", "3",
		"--database-max-in-flight", "2", "--database-query-timeout", "3s"})
	if err != nil {
		t.Fatal(err)
	}
	got := loaderConfig(c)
	want := loader.Config{DSN: "postgres://x", BatchWindow: time.Millisecond, MaxBatch: 50, MaxConns: 3, MaxInFlight: 2, QueryTimeout: 3 * time.Second}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("loaderConfig (-got +want):\n%s", diff)
	}
}
