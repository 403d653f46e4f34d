package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// checkModels refuses what is wrong with the models before any connection:
// bad or repeated names, and empty or malformed table and key names.
func checkModels(models []Model) error {
	seen := make(map[string]bool, len(models))
	for _, m := range models {
		if err := checkName(m.Name); err != nil {
			return err
		}
		if seen[m.Name] {
			return fmt.Errorf("loader: model %q is configured twice", m.Name)
		}
		seen[m.Name] = true
		if _, err := splitTable(m.Table); err != nil {
			return fmt.Errorf("loader: model %q: %w", m.Name, err)
		}
		if m.Key == "" {
			return fmt.Errorf("loader: model %q: no key column", m.Name)
		}
	}
	return nil
}

// checkName refuses names that cannot start a memcached key "Name:id": empty,
// with ':', or with a space or control character.
func checkName(name string) error {
	if name == "" {
		return errors.New("loader: a model has no name")
	}
	for _, c := range []byte(name) {
		switch {
		case c == ':':
			return fmt.Errorf("loader: model %q: name contains ':'", name)
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("loader: model %q: name contains a space or control character", name)
		}
	}
	return nil
}

// splitTable reads "table" or "schema.table" into an identifier. Each part
// is taken as it is (it will be quoted, so case matters); a name holding a
// dot cannot be configured.
func splitTable(table string) (pgx.Identifier, error) {
	parts := strings.Split(table, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("table %q: want \"table\" or \"schema.table\"", table)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("table %q: empty name", table)
		}
	}
	return pgx.Identifier(parts), nil
}

// The catalog look-ups. The names are parameters: to_regclass resolves the
// quoted identifier exactly as the model's statement will (search_path
// included), and the column is compared as it is.
const (
	tableSQL = `SELECT c.oid, c.relkind::text, has_table_privilege(c.oid, 'SELECT')
FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1)`
	columnSQL = `SELECT a.attnum, a.atttypid, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`
	// uniqueSQL: is there a valid unique index (a primary key's included)
	// whose only key column is the column, with no predicate and no
	// expression? Only such an index makes the column's values unique.
	uniqueSQL = `SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
  AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = $2)`
)

// column is what the catalog says of a model's table and key column.
type column struct {
	table   pgx.Identifier
	oid     uint32 // the table's
	relkind string // the table's: r, p, v, m or f
	attnum  int16  // the key column's
	unique  bool   // a unique index covers the key column alone
}

// resolve checks m against the catalog, sets m.KeyType and returns what
// the catalog says of its table and key.
func resolve(ctx context.Context, pool *pgxpool.Pool, m *Model) (column, error) {
	var c column
	var err error
	if c.table, err = splitTable(m.Table); err != nil {
		return c, fmt.Errorf("loader: model %q: %w", m.Name, err)
	}
	if err = lookUpTable(ctx, pool, m.Name, &c); err != nil {
		return c, err
	}
	if m.KeyType, err = lookUpKey(ctx, pool, m.Name, &c, m.Key); err != nil {
		return c, err
	}
	if c.relkind == "v" || c.relkind == "f" {
		return c, nil // no index to look up; warnIfNotUnique says so
	}
	if err = pool.QueryRow(ctx, uniqueSQL, c.oid, c.attnum).Scan(&c.unique); err != nil {
		return c, catalogError(m.Name, "look up the key's unique index", err)
	}
	return c, nil
}

// lookUpTable sets c.oid and c.relkind of c.table, a table, view or
// materialized view that the current user may read.
func lookUpTable(ctx context.Context, pool *pgxpool.Pool, model string, c *column) error {
	var canSelect bool
	table := c.table.Sanitize()
	err := pool.QueryRow(ctx, tableSQL, table).Scan(&c.oid, &c.relkind, &canSelect)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("loader: model %q: table %s does not exist (names are case-sensitive)", model, table)
	case err != nil:
		return catalogError(model, "look up table", err)
	case len(c.relkind) != 1 || !strings.Contains("rpvmf", c.relkind):
		return fmt.Errorf("loader: model %q: %s is not a table or view (relkind %q)", model, table, c.relkind)
	case !canSelect:
		return fmt.Errorf("loader: model %q: no SELECT privilege on table %s", model, table)
	}
	return nil
}

// lookUpKey sets c.attnum of column key of c's table and returns its key
// type.
func lookUpKey(ctx context.Context, pool *pgxpool.Pool, model string, c *column, key string) (KeyType, error) {
	var (
		typ     uint32
		typName string
		table   = c.table
	)
	err := pool.QueryRow(ctx, columnSQL, c.oid, key).Scan(&c.attnum, &typ, &typName)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("loader: model %q: table %s has no key column %s (names are case-sensitive)", model, table.Sanitize(), pgx.Identifier{key}.Sanitize())
	case err != nil:
		return 0, catalogError(model, "look up key column", err)
	}
	switch typ {
	case pgtype.Int8OID:
		return KeyBigint, nil
	case pgtype.Int4OID:
		return KeyInt, nil
	case pgtype.TextOID, pgtype.VarcharOID:
		return KeyText, nil
	case pgtype.UUIDOID:
		return KeyUUID, nil
	}
	return 0, fmt.Errorf("loader: model %q: key column %s of %s is %s; want bigint, integer, text, varchar or uuid",
		model, pgx.Identifier{key}.Sanitize(), table.Sanitize(), typName)
}

// warnIfNotUnique logs a warning when nothing makes m's key unique: of rows
// with the same key, a get would return whichever the query met first.
func warnIfNotUnique(log *slog.Logger, m *Model, c column) {
	if c.unique {
		return
	}
	why := "no unique index or primary key has it as its only column"
	if c.relkind == "v" || c.relkind == "f" {
		why = "a view or foreign table has no index to check"
	}
	log.Warn("key column has no unique index; rows with the same key make a get return any one of them",
		"model", m.Name, "table", c.table.Sanitize(), "key", m.Key, "why", why)
}

// catalogError wraps the failure of a catalog look-up, in ErrUnavailable
// when the database did not answer.
func catalogError(model, op string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("%w: model %q: %s: %w", ErrUnavailable, model, op, err)
	}
	return fmt.Errorf("loader: model %q: %s: %w", model, op, err)
}

// selectSQL is a model's one statement. Its text depends only on the
// configuration, never on a batch, so pgx prepares it once per connection.
// "t.*" names the whole row even if the table has a column named t.
func selectSQL(table pgx.Identifier, key string) string {
	col := "t." + pgx.Identifier{key}.Sanitize()
	return "SELECT " + col + "::text, row_to_json(t.*)::text FROM " + table.Sanitize() +
		" AS t WHERE " + col + " = ANY($1)"
}
