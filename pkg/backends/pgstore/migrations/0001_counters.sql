-- Version 1: the counters table and the functions Take and Cleanup call.
-- {{schema}} is replaced by the quoted schema name. Every function mirrors
-- pkg/limiter exactly (algorithms.go, batch.go, state.go, arith.go): int64
-- nanoseconds of Unix time, 128-bit-exact products (numeric here) and
-- saturation instead of overflow.

-- One row per counter (limiter.State) with its expiry (limiter.Limit.Expiry,
-- Unix ns). A row whose expires_at <= now reads as the zero State; Cleanup
-- deletes such rows. key is the limiter.Request.Key as raw bytes.
CREATE TABLE {{schema}}.counters (
	key        bytea  NOT NULL PRIMARY KEY,
	stamp      bigint NOT NULL,
	count      bigint NOT NULL,
	prev       bigint NOT NULL,
	expires_at bigint NOT NULL
) WITH (fillfactor = 70);

-- Cleanup finds expired rows through this index.
CREATE INDEX counters_expires_at ON {{schema}}.counters (expires_at);

-- now_ns is the database server's clock in Unix nanoseconds, at microsecond
-- resolution (as Redis's TIME): clock_timestamp(), the time of the call,
-- not the transaction's start.
CREATE FUNCTION {{schema}}.now_ns() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
	SELECT (round(extract(epoch FROM clock_timestamp()) * 1000000))::bigint * 1000
$$;

-- sat saturates x to the bigint range (limiter's satAdd, satSub, satMul).
CREATE FUNCTION {{schema}}.sat(x numeric) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT least(greatest(x, -9223372036854775808), 9223372036854775807)::bigint
$$;

-- muldiv is floor(a*b/c), or its ceiling when up, exact and saturated, for
-- a, b >= 0 (limiter's mulDiv, mulDivCeil); c <= 0 gives the maximum.
CREATE FUNCTION {{schema}}.muldiv(a bigint, b bigint, c bigint, up boolean) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE WHEN c <= 0 THEN 9223372036854775807
		ELSE {{schema}}.sat(div(a::numeric * b, c)
			+ CASE WHEN up AND mod(a::numeric * b, c) <> 0 THEN 1 ELSE 0 END)
	END
$$;

-- expiry is limiter.Limit.Expiry of a state with this stamp: the end of
-- window stamp (fixed), of window stamp+1 (sliding), the TAT (token bucket).
CREATE FUNCTION {{schema}}.expiry(alg int, p bigint, stamp bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE alg
		WHEN 1 THEN {{schema}}.sat({{schema}}.sat(stamp::numeric + 2)::numeric * p)
		WHEN 2 THEN stamp
		ELSE {{schema}}.sat({{schema}}.sat(stamp::numeric + 1)::numeric * p)
	END
$$;

-- apply is limiter.Limit.Apply: hits applied to the state (stamp, cnt, prv)
-- at time now (Unix ns) under the limit (alg 0 fixed window, 1 sliding
-- window, 2 token bucket; rq requests per p ns; burst). It returns the new
-- state, the Result fields and whether the state was written. The limit has
-- been checked (limiter.CheckRequests) by the caller.
CREATE FUNCTION {{schema}}.apply(
	alg int, rq bigint, p bigint, burst bigint, hits bigint, now bigint,
	INOUT stamp bigint, INOUT cnt bigint, INOUT prv bigint,
	OUT allowed boolean, OUT remaining bigint, OUT reset_after bigint,
	OUT retry_after bigint, OUT wrote boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
	w bigint;
	to_end bigint;
	cur bigint;
	pre bigint;
	after bigint;
	weighted bigint;
	room bigint;
	d bigint;
	t bigint;
	b bigint;
	tol bigint;
	need bigint;
	backlog bigint;
BEGIN
	allowed := false;
	remaining := 0;
	reset_after := 0;
	retry_after := 0;
	wrote := false;
	IF alg = 2 THEN
		-- Token bucket (GCRA): T = ceil(P/R), tolerance B*T capped at 2^62
		-- ns, everything relative to now.
		IF rq = 0 THEN
			reset_after := p;
			retry_after := p;
			RETURN;
		END IF;
		t := p / rq;
		IF p % rq <> 0 THEN
			t := t + 1;
		END IF;
		b := CASE WHEN burst > 0 THEN burst ELSE rq END;
		tol := least({{schema}}.sat(b::numeric * t), 4611686018427387904);
		backlog := greatest({{schema}}.sat(stamp::numeric - now), 0);
		need := {{schema}}.sat(backlog::numeric + {{schema}}.sat(hits::numeric * t));
		allowed := need <= tol;
		IF allowed THEN
			backlog := need;
			IF hits > 0 THEN
				stamp := {{schema}}.sat(now::numeric + need);
				cnt := 0;
				prv := 0;
				wrote := true;
			END IF;
		ELSE
			-- Exactly hits*T + backlog - tolerance (limiter's mulAddSub).
			retry_after := {{schema}}.sat(hits::numeric * t + backlog - tol);
		END IF;
		reset_after := backlog;
		IF backlog < tol THEN
			remaining := least((tol - backlog) / t, b);
		END IF;
		RETURN;
	END IF;

	-- w = floor(now/P) and the time elapsed in window w (floorDiv); but a
	-- stored window that starts after now by at most MaxClockStepBack (one
	-- hour) is the current one with no time elapsed: the clock stepped back
	-- (limiter's currentWindow).
	w := now / p;
	to_end := now % p;
	IF to_end < 0 THEN
		w := w - 1;
		to_end := to_end + p;
	END IF;
	IF stamp > w AND {{schema}}.sat({{schema}}.sat(({{schema}}.sat(stamp::numeric - w) - 1)::numeric * p)::numeric
			+ (p - to_end)) <= 3600000000000 THEN
		w := stamp;
		to_end := 0;
	END IF;
	to_end := p - to_end;
	IF rq = 0 THEN
		reset_after := to_end;
		retry_after := to_end;
		RETURN;
	END IF;

	IF alg = 0 THEN
		-- Fixed window: refused hits are counted too.
		cur := CASE WHEN stamp = w THEN cnt ELSE 0 END;
		after := {{schema}}.sat(cur::numeric + hits);
		allowed := after <= rq;
		IF hits > 0 THEN
			stamp := w;
			cnt := after;
			prv := 0;
			wrote := true;
		END IF;
		remaining := greatest(0, rq - after);
		reset_after := to_end;
		IF NOT allowed THEN
			retry_after := to_end;
		END IF;
		RETURN;
	END IF;

	-- Sliding window counter.
	cur := 0;
	pre := 0;
	IF stamp = w THEN
		cur := cnt;
		pre := prv;
	ELSIF stamp = w - 1 THEN
		pre := cnt;
	END IF;
	weighted := {{schema}}.muldiv(pre, to_end, p, true);
	after := {{schema}}.sat(cur::numeric + hits);
	allowed := {{schema}}.sat(weighted::numeric + after) <= rq;
	IF allowed THEN
		cur := after;
		IF hits > 0 THEN
			stamp := w;
			cnt := cur;
			prv := pre;
			wrote := true;
		END IF;
	END IF;
	remaining := greatest(0, rq - {{schema}}.sat(weighted::numeric + cur));
	IF cur > 0 THEN
		reset_after := {{schema}}.sat(to_end::numeric + p);
	ELSIF pre > 0 THEN
		reset_after := to_end;
	END IF;
	IF NOT allowed THEN
		-- The earliest time the same hits fit (limiter's slidingRetry).
		IF hits > rq THEN
			retry_after := to_end;
		ELSE
			room := rq - cur - hits;
			IF room >= 0 THEN
				d := {{schema}}.muldiv(room, p, pre, false);
				retry_after := greatest(0, to_end - least(d, p));
			ELSE
				d := {{schema}}.muldiv(rq - hits, p, cur, false);
				retry_after := {{schema}}.sat(to_end::numeric + (p - least(d, p)));
			END IF;
		END IF;
	END IF;
END
$$;

-- take is one limiter.Store.Take call (limiter.ApplyAll), applied
-- atomically: request i counts p_hits[i] against p_keys[i] under the limit
-- (p_algs[i], p_requests[i], p_periods[i], p_bursts[i]); p_shadow[i] marks
-- a Shadow request; p_mode is 0 (CountAll) or 1 (CountIfAllAllowed); p_now
-- is the time in Unix ns, NULL for the server's clock (production). It
-- returns one element per request.
CREATE FUNCTION {{schema}}.take(
	p_keys bytea[], p_algs int[], p_requests bigint[], p_periods bigint[],
	p_bursts bigint[], p_hits bigint[], p_shadow boolean[], p_mode int, p_now bigint,
	OUT allowed boolean[], OUT remaining bigint[], OUT reset_after bigint[],
	OUT retry_after bigint[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	n int := coalesce(cardinality(p_keys), 0);
	v_now bigint;
	v_first int[];
	v_stamp bigint[];
	v_count bigint[];
	v_prev bigint[];
	o_stamp bigint[];
	o_count bigint[];
	o_prev bigint[];
	v_dirty boolean[];
	v_exp bigint[];
	v_all boolean := true;
	r record;
	f int;
BEGIN
	allowed := '{}';
	remaining := '{}';
	reset_after := '{}';
	retry_after := '{}';
	IF n = 0 THEN
		RETURN;
	END IF;
	IF coalesce(cardinality(p_algs), 0) <> n OR coalesce(cardinality(p_requests), 0) <> n
		OR coalesce(cardinality(p_periods), 0) <> n OR coalesce(cardinality(p_bursts), 0) <> n
		OR coalesce(cardinality(p_hits), 0) <> n OR coalesce(cardinality(p_shadow), 0) <> n THEN
		RAISE EXCEPTION 'extauthz take: arrays of different lengths' USING ERRCODE = '22023';
	END IF;

	-- Lock every key's row in key order (so concurrent calls cannot
	-- deadlock), inserting an expired placeholder for a key without one.
	-- DO UPDATE ... WHERE false locks the existing row without writing it.
	INSERT INTO {{schema}}.counters AS c (key, stamp, count, prev, expires_at)
	SELECT DISTINCT u.k, 0, 0, 0, 0 FROM unnest(p_keys) AS u(k) ORDER BY u.k
	ON CONFLICT (key) DO UPDATE SET expires_at = c.expires_at WHERE false;

	-- The clock is read once the rows are locked, so that calls on the same
	-- key see non-decreasing times, as Redis's TIME in a script.
	v_now := coalesce(p_now, {{schema}}.now_ns());

	-- The live state of each request's key (an expired row reads as no
	-- state), and the index of the first request with the same key
	-- (duplicates share that request's state). The join is on the key
	-- alone so that the only index worth using is the primary key.
	SELECT array_agg(q.first::int ORDER BY q.i),
		array_agg(CASE WHEN c.expires_at > v_now THEN c.stamp ELSE 0 END ORDER BY q.i),
		array_agg(CASE WHEN c.expires_at > v_now THEN c.count ELSE 0 END ORDER BY q.i),
		array_agg(CASE WHEN c.expires_at > v_now THEN c.prev ELSE 0 END ORDER BY q.i)
	INTO v_first, v_stamp, v_count, v_prev
	FROM (SELECT u.k, u.i, min(u.i) OVER (PARTITION BY u.k) AS first
		FROM unnest(p_keys) WITH ORDINALITY AS u(k, i)) q
	LEFT JOIN {{schema}}.counters c ON c.key = q.k;

	o_stamp := v_stamp;
	o_count := v_count;
	o_prev := v_prev;
	v_dirty := array_fill(false, ARRAY[n]);
	v_exp := array_fill(0::bigint, ARRAY[n]);
	FOR i IN 1..n LOOP
		f := v_first[i];
		r := {{schema}}.apply(p_algs[i], p_requests[i], p_periods[i], p_bursts[i], p_hits[i],
			v_now, v_stamp[f], v_count[f], v_prev[f]);
		v_stamp[f] := r.stamp;
		v_count[f] := r.cnt;
		v_prev[f] := r.prv;
		IF r.wrote THEN
			v_dirty[f] := true;
			v_exp[f] := {{schema}}.expiry(p_algs[i], p_periods[i], r.stamp);
		END IF;
		allowed[i] := r.allowed;
		remaining[i] := r.remaining;
		reset_after[i] := r.reset_after;
		retry_after[i] := r.retry_after;
		v_all := v_all AND (r.allowed OR p_shadow[i]);
	END LOOP;

	IF p_mode = 1 AND NOT v_all THEN
		-- Nothing is counted: Remaining and ResetAfter describe the
		-- unchanged state, as a read would; Allowed and RetryAfter keep the
		-- in-order values.
		FOR i IN 1..n LOOP
			f := v_first[i];
			r := {{schema}}.apply(p_algs[i], p_requests[i], p_periods[i], p_bursts[i], 0,
				v_now, o_stamp[f], o_count[f], o_prev[f]);
			remaining[i] := r.remaining;
			reset_after[i] := r.reset_after;
		END LOOP;
		RETURN;
	END IF;

	UPDATE {{schema}}.counters AS c
	SET stamp = d.stamp, count = d.count, prev = d.prev, expires_at = d.exp
	FROM unnest(p_keys, v_stamp, v_count, v_prev, v_exp, v_dirty) AS d(key, stamp, count, prev, exp, dirty)
	WHERE d.dirty AND c.key = d.key;
END
$$;

-- cleanup deletes up to p_batch expired rows (by the server's clock) that no
-- call holds, and returns how many it deleted.
CREATE FUNCTION {{schema}}.cleanup(p_batch int) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_now bigint := {{schema}}.now_ns();
	v_rows bigint;
BEGIN
	DELETE FROM {{schema}}.counters AS c
	WHERE c.key IN (
		SELECT x.key FROM {{schema}}.counters AS x
		WHERE x.expires_at <= v_now
		ORDER BY x.expires_at
		LIMIT p_batch
		FOR UPDATE SKIP LOCKED)
	AND c.expires_at <= v_now;
	GET DIAGNOSTICS v_rows = ROW_COUNT;
	RETURN v_rows;
END
$$;
