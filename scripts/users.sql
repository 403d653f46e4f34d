-- The demo table behind model User: make run's, the benchmarks' and the
-- cold-fill benchmark's. psql -v rows=N sets how many rows.
CREATE TABLE users (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	email text,
	active boolean NOT NULL DEFAULT true,
	created_at timestamptz NOT NULL DEFAULT now(),
	score int
);
INSERT INTO users (id, name, email, active, created_at, score)
SELECT i,
       'user ' || i,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || i || '@example.com' END,
       i % 7 <> 0,
       now() - i * interval '1 minute',
       (i * 37) % 1000
FROM generate_series(1, :rows) AS i;
ANALYZE users;
