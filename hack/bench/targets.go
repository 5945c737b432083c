package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// tokenTTLSeconds is how long Redis keeps an idempotency token: 24 hours, counterd's default
// retention of tokens.
const tokenTTLSeconds = 86400

// readBatch is the number of counters read per MGET or query in the final check.
const readBatch = 1000

// idempotentAddScript sets the token key only if it does not exist and increments the
// counter only when that set succeeded, in one atomic script. A re-sent token is acknowledged
// and changes nothing, as in counterd.
var idempotentAddScript = redis.NewScript(`
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('INCRBY', KEYS[2], ARGV[1])
  return 1
end
return 0
`)

// redisTarget adds with INCRBY, or with idempotentAddScript when idempotent is set.
type redisTarget struct {
	client     *redis.Client
	idempotent bool
}

// newRedisTarget connects with a pool of poolSize connections, all opened up front. It loads
// the script with SCRIPT LOAD, so that every add is one EVALSHA.
func newRedisTarget(ctx context.Context, addr string, poolSize int, idempotent bool) (*redisTarget, error) {
	client := redis.NewClient(&redis.Options{
		Addr:         addr,
		PoolSize:     poolSize,
		MinIdleConns: poolSize,
	})
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("ping redis at %s: %w", addr, err)
	}
	if idempotent {
		if err := idempotentAddScript.Load(ctx, client).Err(); err != nil {
			client.Close()
			return nil, fmt.Errorf("load the idempotent add script: %w", err)
		}
	}
	return &redisTarget{client: client, idempotent: idempotent}, nil
}

func (r *redisTarget) Add(ctx context.Context, counter, token string, _ time.Time, delta int64) error {
	if !r.idempotent {
		return r.client.IncrBy(ctx, "c:"+counter, delta).Err()
	}
	return idempotentAddScript.EvalSha(ctx, r.client, []string{"t:" + token, "c:" + counter}, delta, tokenTTLSeconds).Err()
}

func (r *redisTarget) Get(ctx context.Context, counter string) (int64, error) {
	n, err := r.client.Get(ctx, "c:"+counter).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

func (r *redisTarget) ReadAll(ctx context.Context, counters []string) ([]int64, error) {
	values := make([]int64, 0, len(counters))
	for start := 0; start < len(counters); start += readBatch {
		batch := counters[start:min(start+readBatch, len(counters))]
		keys := make([]string, len(batch))
		for i, c := range batch {
			keys[i] = "c:" + c
		}
		got, err := r.client.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range got {
			if v == nil {
				values = append(values, 0)
				continue
			}
			n, err := strconv.ParseInt(v.(string), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid value of key %s: %q is not an integer", keys[i], v)
			}
			values = append(values, n)
		}
	}
	return values, nil
}

func (r *redisTarget) Idempotent() bool { return r.idempotent }

func (r *redisTarget) Close() { r.client.Close() }

// postgresSchema has one row per add in events, keyed by its token, and one row per counter.
const postgresSchema = `
CREATE TABLE IF NOT EXISTS events (
  token   text PRIMARY KEY,
  counter text NOT NULL,
  delta   bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
  name  text PRIMARY KEY,
  count bigint NOT NULL
);`

// postgresAdd inserts the event and, only when that inserted a row, upserts the counter, in
// one statement and so one transaction. A concurrent copy of the same token waits on the
// primary key until the first commits, then inserts nothing and leaves the counter alone.
const postgresAdd = `
WITH inserted AS (
  INSERT INTO events (token, counter, delta) VALUES ($1, $2, $3)
  ON CONFLICT (token) DO NOTHING
  RETURNING counter, delta
)
INSERT INTO counters (name, count)
SELECT counter, delta FROM inserted
ON CONFLICT (name) DO UPDATE SET count = counters.count + EXCLUDED.count`

const postgresGet = `SELECT count FROM counters WHERE name = $1`

const postgresReadAll = `SELECT name, count FROM counters WHERE name = ANY($1)`

// postgresTarget runs postgresAdd through a pool. pgx prepares each statement once per
// connection and reuses it (QueryExecModeCacheStatement, its default).
type postgresTarget struct {
	pool *pgxpool.Pool
}

func newPostgresTarget(ctx context.Context, url string, poolSize int) (*postgresTarget, error) {
	config, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	config.MaxConns = int32(poolSize)
	config.MinConns = int32(poolSize)
	config.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if _, err := pool.Exec(ctx, postgresSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create the tables: %w", err)
	}
	return &postgresTarget{pool: pool}, nil
}

func (p *postgresTarget) Add(ctx context.Context, counter, token string, _ time.Time, delta int64) error {
	_, err := p.pool.Exec(ctx, postgresAdd, token, counter, delta)
	return err
}

func (p *postgresTarget) Get(ctx context.Context, counter string) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, postgresGet, counter).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

func (p *postgresTarget) ReadAll(ctx context.Context, counters []string) ([]int64, error) {
	byName := make(map[string]int64, len(counters))
	for start := 0; start < len(counters); start += readBatch {
		batch := counters[start:min(start+readBatch, len(counters))]
		rows, err := p.pool.Query(ctx, postgresReadAll, batch)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var name string
			var n int64
			if err := rows.Scan(&name, &n); err != nil {
				rows.Close()
				return nil, err
			}
			byName[name] = n
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	values := make([]int64, len(counters))
	for i, c := range counters {
		values[i] = byName[c]
	}
	return values, nil
}

func (p *postgresTarget) Idempotent() bool { return true }

func (p *postgresTarget) Close() { p.pool.Close() }
