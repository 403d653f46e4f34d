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

// The Examples run against a real objcache that TestMain starts (see
// env_test.go): objcacheAddr is its address, db a connection to its
// database, whose table users has the rows 1 to 1500, "user N" with the
// email "userN@example.com", or NULL when N is a multiple of 3.

func ExampleGetByIDs() {
	c := client.New(objcacheAddr)

	type User struct {
		ID        int64     `json:"id"`
		Name      string    `json:"name"`
		Email     *string   `json:"email"` // NULL is nil
		CreatedAt time.Time `json:"created_at"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ids := []int64{1, 3, 1000000}
	users, err := client.GetByIDs[User](ctx, c, "User", ids)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		log.Fatal("objcache was too slow: ", err)
	case errors.Is(err, client.ErrServer):
		log.Fatal("objcache could not load the rows (database down?): ", err)
	case err != nil:
		log.Fatal(err)
	}
	for _, id := range ids {
		u, ok := users[id]
		switch {
		case !ok:
			fmt.Println(id, "has no row")
		case u.Email == nil:
			fmt.Println(u.ID, u.Name, "has no email")
		default:
			fmt.Println(u.ID, u.Name, *u.Email)
		}
	}
	// Output:
	// 1 user 1 user1@example.com
	// 3 user 3 has no email
	// 1000000 has no row
}

func ExampleGetByStringIDs() {
	c := client.New(objcacheAddr)

	type Account struct {
		Handle string `json:"handle"`
		Name   string `json:"name"`
	}
	accounts, err := client.GetByStringIDs[Account](context.Background(), c, "Account", []string{"alice", "zoë", "nobody"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(accounts), accounts["alice"].Name, accounts["zoë"].Name)
	// Output:
	// 2 Alice Zoë
}

func ExampleClient_Delete() {
	c := client.New(objcacheAddr)
	ctx := context.Background()
	users, err := client.GetByIDs[User](ctx, c, "User", []int64{42}) // now cached
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("before:", users[42].Name)

	// Write the row, then delete the cached object.
	if _, err := db.Exec(ctx, "UPDATE users SET name = 'Ada' WHERE id = 42"); err != nil {
		log.Fatal(err)
	}
	if err := c.Delete(ctx, "User", 42); err != nil {
		log.Print("the cached User:42 may be stale until its TTL: ", err)
	}

	users, err = client.GetByIDs[User](ctx, c, "User", []int64{42}) // loads the new row
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after:", users[42].Name)
	// Output:
	// before: user 42
	// after: Ada
}

func ExampleClient_Memcache() {
	c := client.New(objcacheAddr)
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
	if _, err := mc.Get("session:nobody"); errors.Is(err, memcache.ErrCacheMiss) {
		fmt.Println("session:nobody is a miss")
	}

	// Objects come back as raw JSON.
	it, err = mc.Get("Account:alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(it.Value))
	// Output:
	// alice
	// session:nobody is a miss
	// {"handle":"alice","name":"Alice"}
}
