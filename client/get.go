package client

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"unicode"

	"github.com/bradfitz/gomemcache/memcache"
)

// GetByIDs reads the objects model:id of ids through c and decodes each
// row's JSON into a T (with encoding/json, so T's fields take json tags
// named after the table's columns). Ids without a row are absent from the
// map; an id asked twice is asked once.
//
// The ids go out in one multi-get, split into several, one after another,
// when there are more than 500 of them or their keys would make a line
// longer than objcache accepts. objcache answers hits from its cache and
// loads the misses of a request with one query. A miss that objcache cannot
// load (the database is down) fails the whole call with ErrServer, hits
// included: the memcached protocol has no error for one key.
//
// When ctx ends first, GetByIDs returns an error that wraps ctx's error
// (context.DeadlineExceeded or context.Canceled) at once; the request in
// flight completes in the background, bounded by the gomemcache client's
// Timeout, and no further part of it is sent. Such requests count towards
// the Client's MaxInFlight until they end, so that an objcache that stops
// answering costs a bounded number of goroutines and connections. Other
// errors wrap
// ErrUnavailable, ErrServer or ErrDecode, or say that model is not a valid
// model name (empty, or holding ':', spaces or control characters); an
// invalid model is reported before any I/O.
func GetByIDs[T any](ctx context.Context, c *Client, model string, ids []int64) (map[int64]T, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	keys, byKey, err := objectKeys(model, ids, formatInt)
	if err != nil {
		return nil, err
	}
	return getObjects[int64, T](ctx, c, model, keys, byKey)
}

// GetByStringIDs is GetByIDs for models whose key is text or a uuid. The
// map's keys are the ids as given. A uuid is an object id only as
// PostgreSQL prints it, hyphenated in lower case: objcache takes any other
// spelling for a plain key, which misses, so it is absent from the map
// even when the row exists. An id that holds
// spaces or control characters, or makes a key longer than 250 bytes, is
// an error before any I/O.
func GetByStringIDs[T any](ctx context.Context, c *Client, model string, ids []string) (map[string]T, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	keys, byKey, err := objectKeys(model, ids, func(id string) string { return id })
	if err != nil {
		return nil, err
	}
	return getObjects[string, T](ctx, c, model, keys, byKey)
}

// getObjects reads keys, each the key of byKey's id, and decodes the
// values found.
func getObjects[K comparable, T any](ctx context.Context, c *Client, model string, keys []string, byKey map[string]K) (map[K]T, error) {
	if len(keys) == 0 {
		return map[K]T{}, nil
	}
	op := fmt.Sprintf("get %d ids of %s", len(keys), model)
	var items map[string]*memcache.Item
	err := c.run(ctx, op, func() error {
		var err error
		items, err = c.getChunks(ctx, keys)
		if err != nil {
			return classify(op, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[K]T, len(items))
	for _, key := range keys { // in the caller's order, so that errors are stable
		it, ok := items[key]
		if !ok {
			continue
		}
		var v T
		if err := json.Unmarshal(it.Value, &v); err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrDecode, key, err)
		}
		out[byKey[key]] = v
	}
	return out, nil
}

// getChunks reads keys with one GetMulti per chunk, one chunk after another,
// and stops before the next chunk once ctx has ended: its caller has gone.
func (c *Client) getChunks(ctx context.Context, keys []string) (map[string]*memcache.Item, error) {
	items := make(map[string]*memcache.Item, len(keys))
	for rest := keys; len(rest) > 0; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := chunkLen(rest)
		var got map[string]*memcache.Item
		err := retryBroken(func() error {
			var err error
			got, err = c.mc.GetMulti(rest[:n])
			return err
		})
		if err != nil {
			return nil, err
		}
		maps.Copy(items, got)
		rest = rest[n:]
	}
	return items, nil
}

// chunkLen returns how many of keys go into the next get: at most
// maxKeysPerGet, and at most maxGetLineSize bytes of keys and spaces.
func chunkLen(keys []string) int {
	size := 0
	for i, k := range keys {
		size += len(k) + 1
		if i == maxKeysPerGet || (i > 0 && size > maxGetLineSize) {
			return i
		}
	}
	return len(keys)
}

// objectKeys returns the keys model:id of ids, each once, and the id of
// each key, or an error for the first key that is not a valid key.
func objectKeys[K comparable](model string, ids []K, format func(K) string) ([]string, map[string]K, error) {
	keys := make([]string, 0, len(ids))
	byKey := make(map[string]K, len(ids))
	for _, id := range ids {
		key := objectKey(model, format(id))
		if _, dup := byKey[key]; dup {
			continue
		}
		if err := checkKey(key); err != nil {
			return nil, nil, err
		}
		byKey[key] = id
		keys = append(keys, key)
	}
	return keys, byKey, nil
}

func objectKey(model, id string) string { return model + ":" + id }

func formatInt(id int64) string { return strconv.FormatInt(id, 10) }

// checkModel reports whether model can be the name of an objcache model:
// not empty, no ':', no spaces or control characters.
func checkModel(model string) error {
	if model == "" {
		return fmt.Errorf("client: empty model name")
	}
	for _, r := range model {
		if r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("client: model name %q holds %q", model, r)
		}
	}
	return nil
}

// checkKey reports whether key is a valid memcached key: at most 250
// bytes, without spaces or control characters.
func checkKey(key string) error {
	if len(key) > maxKeySize {
		return fmt.Errorf("client: key %.40q... is %d bytes long, more than %d", key, len(key), maxKeySize)
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; b <= ' ' || b == 0x7f {
			return fmt.Errorf("client: key %q holds %q", key, b)
		}
	}
	return nil
}
