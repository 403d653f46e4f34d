package loader

import (
	"context"
	"errors"
	"fmt"
)

// The methods in this file serve the proxy, which knows models by name and
// ids as the bytes of a key: together they make a *Loader the proxy's
// Loader.

// ValidID reports whether id is a valid id of the model named model.
func (l *Loader) ValidID(model string, id []byte) bool {
	m, ok := l.Model(model)
	if !ok {
		return false
	}
	_, err := m.ParseID(id)
	return err == nil
}

// LoadRows is Load for a model given by name and ids given as key bytes:
// rows[i] is the JSON object of ids[i]'s row, nil when there is none.
func (l *Loader) LoadRows(ctx context.Context, model string, ids [][]byte) ([][]byte, error) {
	m, ok := l.Model(model)
	if !ok {
		return nil, fmt.Errorf("loader: unknown model %q", model)
	}
	parsed := make([]ID, len(ids))
	for i, id := range ids {
		var err error
		if parsed[i], err = m.ParseID(id); err != nil {
			return nil, fmt.Errorf("loader: model %q id %q: %w", model, id, err)
		}
	}
	return l.Load(ctx, m, parsed)
}

// Unavailable reports whether err, from LoadRows, means that the database
// could not serve the load now (ErrUnavailable), or the Loader would not
// (ErrOverloaded, ErrClosed), as opposed to an error about the query
// itself, such as an SQL error, which a retry meets again. The proxy
// answers the two differently.
func (l *Loader) Unavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded) || errors.Is(err, ErrClosed)
}

// Counters returns the counters of Stats by the names the proxy's stats
// command lists. Each only grows (the proxy's "stats reset" keeps offsets
// of its own, so that Prometheus counters never go back): the map holds no
// states (Stats.Down) and no ratios; ids per query is db_ids_queried over
// db_queries.
func (l *Loader) Counters() map[string]uint64 {
	st := l.Stats()
	return map[string]uint64{
		"db_loads":         st.Loads,
		"db_ids":           st.IDs,
		"db_coalesced":     st.Coalesced,
		"db_batches":       st.Batches,
		"db_queries":       st.Queries,
		"db_ids_queried":   st.IDsQueried,
		"db_rows":          st.Rows,
		"db_errors":        st.Errors,
		"db_unavailable":   st.Unavailable,
		"db_canceled":      st.Canceled,
		"db_abandoned":     st.Abandoned,
		"db_fast_failures": st.FastFailures,
		"db_overloaded":    st.Overloaded,
	}
}
