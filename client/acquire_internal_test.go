package client

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAFewAbandonedRequestsDoNotFailABusyClient: with every slot taken, a
// call waits for one while only a few of the requests in flight are
// abandoned (a caller with a short deadline, objcache answering); it fails
// at once when half of them are: objcache is not answering in time.
func TestAFewAbandonedRequestsDoNotFailABusyClient(t *testing.T) {
	c := &Client{MaxInFlight: 4}
	ctx := context.Background()
	for range 4 {
		if err := c.acquire(ctx, "get"); err != nil {
			t.Fatal(err)
		}
	}
	c.abandoned.Store(1)
	go func() {
		time.Sleep(10 * time.Millisecond)
		<-c.slots // a request ends
	}()
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.acquire(wait, "get"); err != nil {
		t.Fatalf("acquire with 1 of 4 in flight abandoned = %v, want to wait for the slot that frees", err)
	}
	c.abandoned.Store(2)
	if err := c.acquire(wait, "get"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("acquire with 2 of 4 in flight abandoned = %v, want ErrUnavailable at once", err)
	}
}
