package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/objcache/objcache/client"
)

// The examples need a running objcache, so they are compiled but not run;
// the tests run the same calls against a real one.

func ExampleGetByIDs() {
	c := client.New("127.0.0.1:11311")

	type User struct {
		ID        int64     `json:"id"`
		Name      string    `json:"name"`
		Email     *string   `json:"email"` // NULL is nil
		CreatedAt time.Time `json:"created_at"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	users, err := client.GetByIDs[User](ctx, c, "User", []int64{1, 2, 42})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		log.Fatal("objcache was too slow: ", err)
	case errors.Is(err, client.ErrServer):
		log.Fatal("objcache could not load the rows (database down?): ", err)
	case err != nil:
		log.Fatal(err)
	}
	for _, id := range []int64{1, 2, 42} {
		if u, ok := users[id]; ok {
			fmt.Println(u.ID, u.Name)
		} else {
			fmt.Println(id, "has no row")
		}
	}
}

func ExampleClient_Delete() {
	c := client.New("127.0.0.1:11311")
	ctx := context.Background()
	// After writing the row (UPDATE users SET ... WHERE id = 42):
	if err := c.Delete(ctx, "User", 42); err != nil {
		log.Print("the cached User:42 may be stale until its TTL: ", err)
	}
}

func ExampleClient_Memcache() {
	c := client.New("127.0.0.1:11311")
	// Plain keys pass through objcache to its memcached nodes.
	mc := c.Memcache()
	if err := mc.Set(&memcache.Item{Key: "session:abc", Value: []byte("alice"), Expiration: 3600}); err != nil {
		log.Fatal(err)
	}
	it, err := mc.Get("session:abc")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(it.Value))
}
