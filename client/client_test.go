package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/google/go-cmp/cmp"

	"github.com/objcache/objcache/client"
	"github.com/objcache/objcache/internal/testsupport"
	"github.com/objcache/objcache/protocol"
)

// wantUsers reads the rows of ids from PostgreSQL, skipping missing ones.
func (e *env) wantUsers(t *testing.T, ids ...int64) map[int64]User {
	t.Helper()
	rows, err := e.db.Query(context.Background(),
		"SELECT id, name, email, active, created_at FROM users WHERE id = ANY($1)", ids)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := make(map[int64]User)
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Name, &u.Email, &u.Active, &u.CreatedAt); err != nil {
			t.Fatal(err)
		}
		want[u.ID] = u
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return want
}

// getCounts returns the proxy's gets commands and keys asked so far.
func (e *env) getCounts() (commands, keys uint64) {
	st := e.srv.Stats()
	return st.Commands[protocol.CmdGets].Load(), st.GetHits.Load() + st.GetMisses.Load()
}

// closedAddr returns an address on which nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestGetByIDsReturnsTypedRowsAndLeavesOutMissingIDs(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	ids := []int64{1, 2, 3, 4, 5, 6, 1499, 987654, -5}
	want := e.wantUsers(t, ids...)
	if len(want) != 7 || want[3].Email != nil || want[2].Email == nil {
		t.Fatalf("the fixture is not what this test expects: %v", want)
	}
	for _, round := range []string{"cold", "cached"} {
		got, err := client.GetByIDs[User](context.Background(), e.client, "User", ids)
		if err != nil {
			t.Fatalf("%s: %v", round, err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s: GetByIDs (-got +want):\n%s", round, diff)
		}
	}
	got, err := client.GetByIDs[User](context.Background(), e.client, "User", nil)
	if err != nil || len(got) != 0 {
		t.Errorf("GetByIDs of no ids = %v, %v; want an empty map", got, err)
	}
}

func TestGetByIDsAsksForADuplicateIDOnce(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	cmds0, keys0 := e.getCounts()
	got, err := client.GetByIDs[User](context.Background(), e.client, "User", []int64{7, 8, 7, 7, 8, 9})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, e.wantUsers(t, 7, 8, 9)); diff != "" {
		t.Errorf("GetByIDs (-got +want):\n%s", diff)
	}
	cmds, keys := e.getCounts()
	if cmds-cmds0 != 1 || keys-keys0 != 3 {
		t.Errorf("objcache got %d gets for %d keys, want 1 get for 3 keys", cmds-cmds0, keys-keys0)
	}
}

func TestGetByIDsSplitsLongListsIntoSeveralGets(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	var ids []int64
	for id := int64(401); id <= 1600; id++ { // 1501..1600 have no row
		ids = append(ids, id)
	}
	cmds0, keys0 := e.getCounts()
	got, err := client.GetByIDs[User](context.Background(), e.client, "User", ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, e.wantUsers(t, ids...)); diff != "" {
		t.Errorf("GetByIDs (-got +want):\n%s", diff)
	}
	if len(got) != 1100 {
		t.Errorf("got %d rows, want 1100", len(got))
	}
	cmds, keys := e.getCounts()
	if cmds-cmds0 != 3 || keys-keys0 != 1200 {
		t.Errorf("objcache got %d gets for %d keys, want 3 gets (500+500+200) for 1200 keys", cmds-cmds0, keys-keys0)
	}
}

// Account is a row of accounts.
type Account struct {
	Handle string `json:"handle"`
	Name   string `json:"name"`
}

// Device is a row of devices.
type Device struct {
	ID    string `json:"id"`
	Label string `json:"label"`
}

func TestGetByStringIDsReadsTextAndUUIDKeys(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	ctx := context.Background()
	accounts, err := client.GetByStringIDs[Account](ctx, e.client, "Account", []string{"alice", "zoë", "ops:admin", "nobody", "alice"})
	if err != nil {
		t.Fatal(err)
	}
	wantAccounts := map[string]Account{
		"alice":     {Handle: "alice", Name: "Alice"},
		"zoë":       {Handle: "zoë", Name: "Zoë"},
		"ops:admin": {Handle: "ops:admin", Name: "Ops"},
	}
	if diff := cmp.Diff(accounts, wantAccounts); diff != "" {
		t.Errorf("GetByStringIDs of Account (-got +want):\n%s", diff)
	}

	// A uuid is an object id only in lower case, the text PostgreSQL
	// prints: in upper case it is a plain key, which misses.
	devices, err := client.GetByStringIDs[Device](ctx, e.client, "Device", []string{
		"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "F0E1D2C3-B4A5-4968-8776-655443322110", "00000000-0000-4000-8000-000000000000",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDevices := map[string]Device{
		"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d": {ID: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", Label: "phone"},
	}
	if diff := cmp.Diff(devices, wantDevices); diff != "" {
		t.Errorf("GetByStringIDs of Device (-got +want):\n%s", diff)
	}
}

func TestGetByStringIDsSplitsLongKeysByLineLength(t *testing.T) {
	t.Parallel()
	// 400 keys of 203 bytes make a line of 80 KiB, past objcache's 64 KiB:
	// fewer than 500 keys, but they must go in two gets.
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	var ids []string
	want := make(map[string]Account)
	for i := 1; i <= 400; i++ {
		h := fmt.Sprintf("%s%04d", strings.Repeat("h", 190), i)
		ids = append(ids, h)
		want[h] = Account{Handle: h, Name: fmt.Sprintf("long %d", i)}
	}
	cmds0, _ := e.getCounts()
	got, err := client.GetByStringIDs[Account](context.Background(), e.client, "Account", ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("GetByStringIDs (-got +want):\n%s", diff)
	}
	if cmds, _ := e.getCounts(); cmds-cmds0 != 2 {
		t.Errorf("objcache got %d gets, want 2", cmds-cmds0)
	}
}

func TestDeleteThenReadReturnsTheUpdatedRow(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil) // with a hot tier
	ctx := context.Background()
	for i := 0; i < 2; i++ { // fill, then a hit
		got, err := client.GetByIDs[User](ctx, e.client, "User", []int64{42})
		if err != nil || got[42].Name != "user 42" {
			t.Fatalf("GetByIDs = %v, %v; want user 42", got, err)
		}
	}
	if _, err := e.db.Exec(ctx, "UPDATE users SET name = 'renamed', email = NULL WHERE id = 42"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Delete(ctx, "User", 42); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err := client.GetByIDs[User](ctx, e.client, "User", []int64{42})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, e.wantUsers(t, 42)); diff != "" {
		t.Errorf("GetByIDs after the update and Delete (-got +want):\n%s", diff)
	}

	// DeleteString deletes objects with text keys.
	if _, err := e.db.Exec(ctx, "UPDATE accounts SET name = 'Alice B.' WHERE handle = 'alice'"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.DeleteString(ctx, "Account", "alice"); err != nil {
		t.Fatalf("DeleteString: %v", err)
	}
	accounts, err := client.GetByStringIDs[Account](ctx, e.client, "Account", []string{"alice"})
	if err != nil || accounts["alice"].Name != "Alice B." {
		t.Errorf("GetByStringIDs after the update and DeleteString = %v, %v; want Alice B.", accounts, err)
	}
}

func TestDeleteOfAMissingObjectIsNotAnError(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	ctx := context.Background()
	if err := e.client.Delete(ctx, "User", 987654); err != nil {
		t.Errorf("Delete of a row that never existed: %v", err)
	}
	if err := e.client.Delete(ctx, "User", 5); err != nil { // never read, so not cached
		t.Errorf("Delete of an object that is not cached: %v", err)
	}
	if err := e.client.DeleteString(ctx, "Account", "nobody"); err != nil {
		t.Errorf("DeleteString of a missing object: %v", err)
	}
}

func TestRowThatDoesNotFitTIsADecodeErrorNamingTheKey(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	type wrong struct {
		ID string `json:"id"` // a bigint in the table
	}
	got, err := client.GetByIDs[wrong](context.Background(), e.client, "User", []int64{987654, 7})
	if !errors.Is(err, client.ErrDecode) || !strings.Contains(err.Error(), "User:7") {
		t.Fatalf("GetByIDs into a type that does not fit = %v, %v; want ErrDecode naming User:7", got, err)
	}
	t.Logf("error: %v", err)
}

func TestContextDeadlineEndsASlowRead(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := client.GetByIDs[User](ctx, e.client, "SlowUser", []int64{1}) // the query sleeps 1s
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetByIDs = %v, %v; want context.DeadlineExceeded", got, err)
	}
	if elapsed > 300*time.Millisecond {
		t.Errorf("GetByIDs with a 100ms deadline took %v", elapsed)
	}
	err = e.client.Delete(ctx, "User", 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Delete with an expired context = %v, want context.DeadlineExceeded", err)
	}
}

func TestFillSlowerThanGomemcachesDefaultTimeoutSucceeds(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	got, err := client.GetByIDs[User](context.Background(), e.client, "SlowUser", []int64{1, 2})
	if err != nil {
		t.Fatalf("a fill that takes 1s (gomemcache's default timeout is %v): %v", memcache.DefaultTimeout, err)
	}
	if diff := cmp.Diff(got, e.wantUsers(t, 1, 2)); diff != "" {
		t.Errorf("GetByIDs (-got +want):\n%s", diff)
	}
}

func TestCanceledContextSendsNothing(t *testing.T) {
	c := client.New(closedAddr(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := client.GetByIDs[User](ctx, c, "User", []int64{1})
	if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnavailable) {
		t.Errorf("GetByIDs with a canceled context = %v, want context.Canceled before any I/O", err)
	}
}

func TestUnreachableObjcacheIsErrUnavailable(t *testing.T) {
	c := client.New(closedAddr(t))
	ctx := context.Background()
	if _, err := client.GetByIDs[User](ctx, c, "User", []int64{1}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("GetByIDs = %v, want ErrUnavailable", err)
	}
	if _, err := client.GetByStringIDs[Account](ctx, c, "Account", []string{"alice"}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("GetByStringIDs = %v, want ErrUnavailable", err)
	}
	if err := c.Delete(ctx, "User", 1); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Delete = %v, want ErrUnavailable", err)
	}
	if _, err := client.GetByIDs[User](ctx, client.New(), "User", []int64{1}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("GetByIDs on a Client of no servers = %v, want ErrUnavailable", err)
	}
}

func TestDatabaseDownOnAMissIsErrServer(t *testing.T) {
	t.Parallel()
	pg := testsupport.StartPostgres(t)
	e := startEnv(t, pg, nil)
	ctx := context.Background()
	if _, err := client.GetByIDs[User](ctx, e.client, "User", []int64{1}); err != nil {
		t.Fatal(err)
	}
	pg.Stop(t)
	got, err := client.GetByIDs[User](ctx, e.client, "User", []int64{1})
	if err != nil || got[1].Name != "user 1" {
		t.Errorf("a hit with the database down = %v, %v; want user 1", got, err)
	}
	start := time.Now()
	got, err = client.GetByIDs[User](ctx, e.client, "User", []int64{1, 2})
	if !errors.Is(err, client.ErrServer) || errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("a miss with the database down = %v, %v; want ErrServer", got, err)
	}
	t.Logf("error after %v: %v", time.Since(start), err)
}

func TestDeleteWithItsNodeDownIsErrServer(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	e.node.Kill()
	err := e.client.Delete(context.Background(), "User", 1)
	if !errors.Is(err, client.ErrServer) {
		t.Fatalf("Delete with the node down = %v, want ErrServer", err)
	}
	t.Logf("error: %v", err)
}

func TestInvalidModelsAndIDsFailBeforeIO(t *testing.T) {
	c := client.New(closedAddr(t)) // any I/O would be ErrUnavailable
	ctx := context.Background()
	for _, model := range []string{"", "Us er", "User:1", "Us\ter", "Us\x00er", strings.Repeat("M", 249)} {
		if _, err := client.GetByIDs[User](ctx, c, model, []int64{1}); err == nil || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("GetByIDs of model %q = %v, want an error before I/O", model, err)
		}
		if err := c.Delete(ctx, model, 1); err == nil || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("Delete of model %q = %v, want an error before I/O", model, err)
		}
	}
	for _, id := range []string{"a b", "a\r\nget x", "a\x00", "\x7f", strings.Repeat("h", 243)} {
		_, err := client.GetByStringIDs[Account](ctx, c, "Account", []string{"alice", id})
		if err == nil || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("GetByStringIDs of id %q = %v, want an error before I/O", id, err)
		}
		if err := c.DeleteString(ctx, "Account", id); err == nil || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("DeleteString of id %q = %v, want an error before I/O", id, err)
		}
	}
	// 242 bytes of id make a key of exactly 250 bytes: valid.
	if _, err := client.GetByStringIDs[Account](ctx, c, "Account", []string{strings.Repeat("h", 242)}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("GetByStringIDs of a 250-byte key = %v, want it sent (ErrUnavailable)", err)
	}
}

// TestReadsSurviveAnObjcacheRestart: gomemcache keeps idle connections and
// does not check them before use, so the first request after objcache
// restarts goes out on a connection that objcache closed.
func TestReadsSurviveAnObjcacheRestart(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	ctx := context.Background()
	raw := memcache.New(e.addr)
	if _, err := raw.Get("User:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetByIDs[User](ctx, e.client, "User", []int64{1}); err != nil {
		t.Fatal(err)
	}
	e.stop()
	serve(t, e.cfg, e.addr)

	if _, err := raw.Get("User:1"); err == nil {
		t.Log("gomemcache's first Get after the restart did not fail; the retry below is not exercised")
	}
	got, err := client.GetByIDs[User](ctx, e.client, "User", []int64{1})
	if err != nil || got[1].Name != "user 1" {
		t.Errorf("GetByIDs after objcache restarted = %v, %v; want user 1", got, err)
	}
	if err := e.client.Delete(ctx, "User", 1); err != nil {
		t.Errorf("Delete after objcache restarted: %v", err)
	}
}

func TestClientIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	e := startEnv(t, testsupport.SharedPostgres(t), nil)
	var all []int64
	for id := int64(1); id <= 200; id++ {
		all = append(all, id)
	}
	want := e.wantUsers(t, all...)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				ids := []int64{int64(1 + (g*20+i)%200), int64(1 + (g*7+i*13)%200), 100000}
				got, err := client.GetByIDs[User](context.Background(), e.client, "User", ids)
				if err != nil {
					t.Error(err)
					return
				}
				for _, id := range ids[:2] {
					if diff := cmp.Diff(got[id], want[id]); diff != "" {
						t.Errorf("user %d (-got +want):\n%s", id, diff)
						return
					}
				}
				if i%5 == 0 {
					if err := e.client.Delete(context.Background(), "User", ids[0]); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestErrorAndClientErrorRepliesAreErrServer(t *testing.T) {
	ctx := context.Background()
	for _, reply := range []string{"CLIENT_ERROR line too long\r\n", "ERROR\r\n", "SERVER_ERROR out of memory\r\n"} {
		c := client.New(startFakeObjcache(t, reply).addr)
		_, err := client.GetByIDs[User](ctx, c, "User", []int64{1, 2})
		if !errors.Is(err, client.ErrServer) || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("GetByIDs answered %q: %v, want ErrServer", reply, err)
		}
		if err := c.Delete(ctx, "User", 1); !errors.Is(err, client.ErrServer) || errors.Is(err, client.ErrUnavailable) {
			t.Errorf("Delete answered %q: %v, want ErrServer", reply, err)
		}
	}
	// A reply that is not the protocol: whatever answered, it is no objcache.
	c := client.New(startFakeObjcache(t, "HELLO\r\n").addr)
	if _, err := client.GetByIDs[User](ctx, c, "User", []int64{1}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("GetByIDs answered HELLO: %v, want ErrUnavailable", err)
	}
	if err := c.Delete(ctx, "User", 1); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Delete answered HELLO: %v, want ErrUnavailable", err)
	}
}

func TestAnAddressThatDoesNotResolveLeavesTheOthersServing(t *testing.T) {
	m := testsupport.StartMemcached(t)
	if err := memcache.New(m.Addr).Set(&memcache.Item{Key: "User:1", Value: []byte(`{"id":1,"name":"one"}`)}); err != nil {
		t.Fatal(err)
	}
	bad := []string{"no-such-host.invalid:11211", "127.0.0.1", "127.0.0.1:port"}
	c := client.New(append([]string{m.Addr}, bad...)...)
	got, err := client.GetByIDs[User](context.Background(), c, "User", []int64{1})
	if err != nil || got[1].Name != "one" {
		t.Errorf("GetByIDs through New(good, bad...) = %v, %v; want user 1 from the good address", got, err)
	}
	c, err = client.NewClient(append([]string{m.Addr}, bad...)...)
	for _, addr := range bad {
		if err == nil || !strings.Contains(err.Error(), strconvQuote(addr)) {
			t.Errorf("NewClient: err = %v, want it to name %q", err, addr)
		}
	}
	if got, err := client.GetByIDs[User](context.Background(), c, "User", []int64{1}); err != nil || got[1].Name != "one" {
		t.Errorf("GetByIDs through NewClient(good, bad...) = %v, %v; want user 1", got, err)
	}
	if _, err := client.NewClient(m.Addr); err != nil {
		t.Errorf("NewClient of an address that resolves: %v", err)
	}
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// TestAbandonedRequestsToAStuckObjcacheStayBounded: against an objcache
// that accepts and never answers, calls with short deadlines return on
// time, and the requests they leave behind (which gomemcache ends only at
// its Timeout) stay within MaxInFlight: beyond it, calls fail fast.
func TestAbandonedRequestsToAStuckObjcacheStayBounded(t *testing.T) {
	const limit = 16
	f := startFakeObjcache(t, "")
	c := client.New(f.addr)
	c.MaxInFlight = limit
	c.Memcache().Timeout = time.Second // the abandoned requests end within the test
	before := runtime.NumGoroutine()
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		_, err := client.GetByIDs[User](ctx, c, "User", []int64{1})
		return err
	}
	start := time.Now()
	var late, unavailable int
	for range 200 {
		switch err := call(); {
		case errors.Is(err, context.DeadlineExceeded):
			late++
		case errors.Is(err, client.ErrUnavailable):
			unavailable++
		default:
			t.Fatalf("a call to a stuck objcache: %v", err)
		}
	}
	took, goroutines := time.Since(start), runtime.NumGoroutine()-before
	t.Logf("200 calls in %v: %d deadlines, %d ErrUnavailable; %d goroutines and %d connections left", took, late, unavailable, goroutines, f.open.Load())
	// Per request: the call's goroutine, gomemcache's GetMulti's, and the
	// fake objcache's for the connection.
	if late < limit || late > limit+2 || goroutines > 3*limit+4 || f.accepted.Load() > limit {
		t.Errorf("%d deadlines, %d goroutines, %d connections; want %d, at most %d, at most %d",
			late, goroutines, f.accepted.Load(), limit, 3*limit+4, limit)
	}
	if took > time.Second {
		t.Errorf("200 calls with 5ms deadlines took %v", took)
	}

	// Calls made at once wait for a slot until their deadline, and open
	// no more connections.
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if err := call(); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrUnavailable) {
				t.Errorf("a call to a stuck objcache: %v", err)
			}
		})
	}
	wg.Wait()
	if n := f.accepted.Load(); n > limit {
		t.Errorf("%d connections after 200 concurrent calls, want at most %d", n, limit)
	}

	// The abandoned requests end at gomemcache's Timeout, and with them
	// their goroutines and connections.
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before+2 || f.open.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines above the start and %d connections open 3s later", runtime.NumGoroutine()-before, f.open.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := call(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call once the abandoned requests ended: %v, want a slot and its deadline", err)
	}
}

func TestCallsOverMaxInFlightWaitForAHealthyObjcache(t *testing.T) {
	m := testsupport.StartMemcached(t)
	if err := memcache.New(m.Addr).Set(&memcache.Item{Key: "User:1", Value: []byte(`{"id":1,"name":"one"}`)}); err != nil {
		t.Fatal(err)
	}
	c := client.New(m.Addr)
	c.MaxInFlight = 2
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 10 {
				got, err := client.GetByIDs[User](context.Background(), c, "User", []int64{1})
				if err != nil || got[1].Name != "one" {
					t.Errorf("GetByIDs = %v, %v; want user 1", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
